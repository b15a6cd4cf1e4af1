"""The HTTP API's client: ``POST /api/event`` and ``GET /api/history`` with an API key."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
import msgspec

from realtime.client.errors import PublishError
from realtime.client.messages import HistoryPage, Published, encode


class Publisher:
    """Publish from a backend through the gateway's HTTP API (``API_KEYS``: ``api_key``)::

        async with Publisher("http://127.0.0.1:8080", api_key="k1") as publisher:
            published = await publisher.publish("room1", "user-message", {"text": "hello"})
            print(published.message_id, published.offset)

    Answers other than 200 raise :class:`PublishError` (``status``, the JSON ``error``, the
    body); a gateway that does not answer raises httpx's ``TransportError``. Give ``client``
    to share an ``httpx.AsyncClient`` (it is then not closed by :meth:`aclose`).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._own = client is None
        self._http = client or httpx.AsyncClient(timeout=timeout)

    async def publish(
        self,
        channel: str,
        event: str = "message",
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Published:
        """``POST /api/event``: ``payload`` is any JSON value. With ``idempotency_key``, a
        retry of the same request within the gateway's ``IDEMPOTENCY_WINDOW_SECONDS`` is
        published once and answered as the first was."""
        headers = {**self._headers, "content-type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        body = encode({"channel": channel, "event": event, "payload": payload})
        answer = await self._http.post(self.base_url + "/api/event", content=body, headers=headers)
        data = self._json(answer)
        return Published(
            message_id=str(data.get("message_id", "")),
            offset=int(data.get("offset", 0)),
            epoch=str(data.get("epoch", "")),
            body=answer.text,
        )

    async def history(self, channel: str, since: int = 0, limit: int = 0) -> HistoryPage:
        """``GET /api/history``: the broadcasts of a history channel after offset ``since``
        (at most ``limit``; 0: the gateway's ``HISTORY_SIZE``), oldest first."""
        params = {"channel": channel, "since": str(since), "limit": str(limit)}
        answer = await self._http.get(
            self.base_url + "/api/history", params=params, headers=self._headers
        )
        self._json(answer)
        return msgspec.json.decode(answer.content, type=HistoryPage)

    @staticmethod
    def _json(answer: httpx.Response) -> dict[str, Any]:
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        if answer.status_code != 200:
            raise PublishError(answer.status_code, str(data.get("error", "")), answer.text)
        return data

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
