"""The asyncio WebSocket client: one connection to a gateway, its subscriptions, and the
reconnect loop that puts them back (docs/clients.md#python)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from realtime.client.backoff import Backoff
from realtime.client.errors import (
    ClientClosed,
    ClientError,
    ConnectError,
    ConnectionLost,
    GatewayError,
)
from realtime.client.messages import (
    Ack,
    Broadcast,
    ErrorFrame,
    Position,
    PresenceJoin,
    PresenceLeave,
    PresenceSync,
    PresenceUpdate,
    Subscribed,
    decode,
    encode,
)
from realtime.client.presence import Outcome
from realtime.client.subscription import Subscription

log = logging.getLogger("realtime.client")

TokenProvider = Callable[[], str | Awaitable[str]]

#: Refusals worth another try: a timeout, too many connections, a full or failing instance.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ConnectionState(enum.StrEnum):
    """``Client.state``: ``disconnected`` before :meth:`Client.connect`, then ``connecting``,
    ``connected``; ``reconnecting`` while the connection is down and being restored;
    ``closed`` at the end (closed by the application, or a reconnect refused for good)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


def ws_url(url: str, user_id: str | None = None) -> str:
    """The gateway's ``/ws`` URL from its base URL (``http://host:8080``, or behind a path
    prefix) or from the ``/ws`` URL itself, with ``user_id`` in the query.

    >>> ws_url("http://127.0.0.1:8080", "alice")
    'ws://127.0.0.1:8080/ws?user_id=alice'
    >>> ws_url("wss://example.com/realtime/ws")
    'wss://example.com/realtime/ws'
    """
    parts = urlsplit(url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"not a gateway URL (http, https, ws or wss): {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if user_id is not None:
        query = [(k, v) for k, v in query if k != "user_id"] + [("user_id", user_id)]
    return urlunsplit((schemes[parts.scheme], parts.netloc, path, urlencode(query), ""))


class _Pacer:
    """A token bucket on the frames this client sends, below the gateway's default
    ``WS_MAX_FRAMES_PER_SECOND`` (100, bursts of 200), so resubscribing many channels after a
    reconnect is not refused with ``rate_limited`` (those refusals carry no ``ref``, so the
    call would only time out)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self.tokens = self.burst
        self.last = time.monotonic()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1  # a reservation: concurrent senders queue up behind each other
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class Client:
    """A connection to a realtime-mq gateway over WebSocket (every call waits for its ``ref``
    ack, an extension a seed gateway lacks).

    ``url`` is the gateway's base URL or its ``/ws`` URL. Identity: ``user_id`` for a gateway
    without JWT keys (development; sent as ``?user_id=``, which a gateway with keys ignores),
    else ``token`` and/or ``token_provider`` (a function,
    plain or async, returning a fresh JWT: called for the first connection when no ``token``
    is given, when the gateway says ``token_expired``, and before every reconnect). The token
    goes in the ``Authorization`` header, never in the URL.

    ::

        async with Client("http://127.0.0.1:8080", user_id="alice") as client:
            room = await client.subscribe("room1")
            await room.publish("chat", {"text": "hi"})
            async for message in room:
                print(message)

    ``reconnect`` (default true): after a lost connection, wait :class:`Backoff` (jittered,
    capped), connect again, subscribe every channel again (recovering history with ``since``
    where the channel has it), and join presence again with the same meta. A refusal other
    than 408/429/5xx (or 401 with a ``token_provider``) ends it: the client closes.

    ``state`` is a :class:`ConnectionState`; ``on_state(state)`` is called on each change.
    ``on_error(exc)`` gets what answers no call: an ``error`` frame nobody awaits
    (:class:`GatewayError`), a failed reconnect attempt, a dropped message; without it they
    are logged (logger ``realtime.client``). ``on_frame(text)`` sees every frame as received,
    except the acks of this client's own calls. Callbacks run in the reader and must not
    block; an exception in one is logged and the reader goes on.

    Each call (``subscribe``, ``publish``, ``track``, ...) sends a frame with a ``ref`` and
    waits up to ``request_timeout`` for the answer; while reconnecting it first waits for the
    connection, within the same time.
    """

    def __init__(
        self,
        url: str,
        *,
        user_id: str | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        max_queue: int = 10_000,
        max_frame_bytes: int | None = 64 * 1024 * 1024,
        max_frames_per_second: float = 80,
        headers: Mapping[str, str] | None = None,
        on_state: Callable[[ConnectionState], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_frame: Callable[[str], None] | None = None,
    ) -> None:
        if max_queue < 1 or request_timeout <= 0:
            raise ValueError("max_queue must be at least 1 and request_timeout positive")
        self.url = ws_url(url, user_id)
        self._token = token
        self._token_provider = token_provider
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._max_queue = max_queue
        self._max_frame_bytes = max_frame_bytes
        self._pacer = _Pacer(max_frames_per_second)
        self._headers = dict(headers or {})
        self._on_state = on_state
        self._on_error = on_error
        self._on_frame = on_frame

        self._state = ConnectionState.DISCONNECTED
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._fatal: Exception | None = None
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[int, asyncio.Future[Ack]] = {}
        self._refs = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Close code and reason of the last connection that closed (None before).
        self.close_code: int | None = None
        self.close_reason = ""

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        return dict(self._subs)

    async def connect(self) -> None:
        """Open the connection. The first attempt is not retried: a refused upgrade raises
        :class:`ConnectError` (status and the gateway's ``error``), an unreachable gateway
        ``OSError`` or ``TimeoutError``, so a wrong URL or token shows at once."""
        if self._state is not ConnectionState.DISCONNECTED:
            raise ClientError(f"connect() on a client that is {self._state.value}")
        self._set_state(ConnectionState.CONNECTING)
        try:
            if self._token is None and self._token_provider is not None:
                self._token = await self._provide_token()
            ws = await self._open()
        except BaseException:
            self._set_state(ConnectionState.CLOSED)
            self._closed.set()
            raise
        self._attach(ws)
        self._set_state(ConnectionState.CONNECTED)
        self._connected.set()
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        """Close the connection and end every subscription's iteration. Safe to call twice."""
        if self._state is ConnectionState.CLOSED:
            return
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        tasks = [t for t in (self._supervisor, self._reader, *self._tasks) if t is not None]
        for task in tasks:
            if task is not self._reader:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    async def wait_closed(self) -> None:
        """Wait until the client is closed: by :meth:`close`, a refused reconnect, or (with
        ``reconnect=False``) the connection's end."""
        await self._closed.wait()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- calls -------------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        *,
        listen: Iterable[str] = ("broadcast", "presence"),
        recover: bool = True,
        since: Position | None = None,
    ) -> Subscription:
        """Subscribe to ``channel`` and return its :class:`Subscription` once the gateway has
        acknowledged it (with ``"presence"`` in ``listen``, its member list is then filled).

        ``recover`` (history channels, ``HISTORY_CHANNELS`` on the gateway): keep the channel's
        position and, after a reconnect, receive exactly the broadcasts missed meanwhile.
        ``since`` starts from a position the application kept (an earlier subscription's
        :attr:`Subscription.position`): the broadcasts after it are replayed first.

        Raises :class:`GatewayError` (``forbidden``, ``too_many_subscriptions``, ...) and
        ``ValueError`` when the channel is subscribed already on this client.
        """
        kinds = tuple(listen)
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel!r}; unsubscribe first")
        ws = await self._ready()
        sub = Subscription(self, channel, kinds, recover, since, self._max_queue)
        # Registered before the frame goes: its presence_sync and replay come before the ack.
        self._subs[channel] = sub
        frame = sub.subscribe_frame()
        try:
            await self._request(frame, ws)
        except GatewayError as exc:
            if exc.code != "history_unavailable":
                self._drop(sub, exc)
                raise
            sub.recovery_failed("since" in frame)  # live, but nothing replayed
            self._report(exc)
        except BaseException as exc:
            self._drop(sub, exc if isinstance(exc, Exception) else None)
            raise
        return sub

    def _drop(self, sub: Subscription, error: Exception | None) -> None:
        self._forget(sub)
        sub._end(error)

    async def publish(self, channel: str, event: str, payload: Any = None) -> Ack:
        """Broadcast on ``channel`` without subscribing (see :meth:`Subscription.publish`)."""
        return await self._request(
            {"type": "broadcast", "channel": channel, "event": event, "payload": payload}
        )

    async def refresh(self, token: str | None = None) -> None:
        """Send the gateway a fresh token for this connection (``token``, else the
        ``token_provider``'s); the client does this by itself on ``token_expired``."""
        if token is None:
            if self._token_provider is None:
                raise ClientError("refresh() needs a token or a token_provider")
            token = await self._provide_token()
        self._token = token
        await self._request({"type": "refresh", "token": token})

    # --- internals: requests -----------------------------------------------------------------

    async def _ready(self) -> ClientConnection:
        if self._state is ConnectionState.DISCONNECTED:
            raise ClientError("not connected: call connect() first (or use `async with`)")
        if not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), self._request_timeout)
            except TimeoutError:
                raise ConnectionLost(f"not connected within {self._request_timeout:g}s") from None
        if self._state is ConnectionState.CLOSED or self._ws is None:
            raise self._fatal or ClientClosed("the client is closed")
        return self._ws

    async def _request(self, frame: dict[str, Any], ws: ClientConnection | None = None) -> Ack:
        """Send ``frame`` with a fresh ``ref`` on ``ws`` (the live connection by default) and
        wait for its ack; an error frame with that ref raises :class:`GatewayError`."""
        if ws is None:
            ws = await self._ready()
        self._refs += 1
        ref = self._refs
        answer: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[ref] = answer
        try:
            await self._pacer.take()
            await ws.send(encode({**frame, "ref": ref}).decode())
            return await asyncio.wait_for(answer, self._request_timeout)
        except ConnectionClosed:
            raise ConnectionLost(f"connection closed before {frame['type']} was answered") from None
        finally:
            self._pending.pop(ref, None)

    # --- internals: the connection -----------------------------------------------------------

    async def _provide_token(self) -> str:
        assert self._token_provider is not None
        token = self._token_provider()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token:
            raise ClientError("token_provider returned no token")
        return token

    async def _open(self) -> ClientConnection:
        headers = dict(self._headers)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            return await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self._open_timeout,
                max_size=self._max_frame_bytes,
            )
        except InvalidStatus as exc:
            response = exc.response
            try:
                error = str(json.loads(response.body or b"{}").get("error", ""))
            except (ValueError, AttributeError):
                error = ""
            raise ConnectError(response.status_code, error) from None

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._dispatch(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""

    async def _supervise(self) -> None:
        while True:
            assert self._reader is not None
            await self._reader
            self._connected.clear()
            lost = ConnectionLost(f"connection closed ({self.close_code})")
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(lost)
            for sub in self._subs.values():
                sub.connection_lost()
            if self._closing or not self._reconnect:
                break
            log.info("connection lost (%s %s), reconnecting", self.close_code, self.close_reason)
            self._set_state(ConnectionState.RECONNECTING)
            if not await self._reconnect_once_up():
                break
        self._finish()

    async def _reconnect_once_up(self) -> bool:
        """Connect again until it works (true) or a refusal says it never will (false)."""
        attempt = 0
        while not self._closing:
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            try:
                if self._token_provider is not None:
                    self._token = await self._provide_token()
                ws = await self._open()
            except ConnectError as exc:
                retry = exc.status in RETRY_STATUSES or (
                    exc.status == 401 and self._token_provider is not None
                )
                self._report(exc)
                if not retry:
                    self._fatal = exc
                    return False
                continue
            except (OSError, TimeoutError, InvalidHandshake, ClientError) as exc:
                self._report(ConnectionLost(f"reconnect attempt {attempt} failed: {exc!r}"))
                continue
            self._attach(ws)
            try:
                await self._restore(ws)
            except (ConnectionLost, TimeoutError) as exc:
                self._report(ConnectionLost(f"connection lost while restoring: {exc}"))
                await ws.close()
                assert self._reader is not None
                await self._reader
                continue
            self._set_state(ConnectionState.CONNECTED)
            self._connected.set()
            return True
        return False

    async def _restore(self, ws: ClientConnection) -> None:
        """Subscribe every channel again (recovering with ``since``) and rejoin presence."""
        for sub in list(self._subs.values()):
            frame = sub.subscribe_frame()
            try:
                await self._request(frame, ws)
            except GatewayError as exc:
                self._report(exc)
                if exc.code == "history_unavailable":
                    # Subscribed, but the history store could not replay what was missed.
                    sub.recovery_failed("since" in frame)
                else:
                    # Refused now (the new token does not grant it, say): this one ends.
                    self._drop(sub, exc)
                    continue
            meta = sub._meta
            if meta is not None:
                frame = {"type": "presence_join", "channel": sub.channel, "payload": meta}
                try:
                    await self._request(frame, ws)
                except GatewayError as exc:
                    sub._meta = None
                    self._report(exc)

    def _finish(self) -> None:
        self._set_state(ConnectionState.CLOSED)
        self._connected.set()  # wakes callers waiting for a connection: they raise
        self._closed.set()
        closed = self._fatal or ClientClosed("the client is closed")
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(closed)
        for sub in list(self._subs.values()):
            sub._end(self._fatal)
        self._subs.clear()

    # --- internals: frames -------------------------------------------------------------------

    def _dispatch(self, raw: str) -> None:
        """Route one frame; nothing raised here may end the reader."""
        try:
            frame = decode(raw)
            own_ack = isinstance(frame, Ack) and frame.ref in self._pending
            if self._on_frame is not None and not own_ack:
                self._call(self._on_frame, raw)
            match frame:
                case Ack(ref=int() as ref) if ref in self._pending:
                    answer = self._pending[ref]
                    if not answer.done():
                        answer.set_result(frame)
                case ErrorFrame(ref=int() as ref) if ref in self._pending:
                    answer = self._pending[ref]
                    if not answer.done():
                        answer.set_exception(GatewayError(frame.code, frame.message, frame.channel))
                case ErrorFrame():
                    self._unasked(frame)
                case Broadcast():
                    if (sub := self._subs.get(frame.channel)) is not None:
                        sub.on_broadcast(frame)
                case PresenceSync():
                    if (sub := self._subs.get(frame.channel)) is not None:
                        sub.on_sync(frame)
                case PresenceJoin() | PresenceUpdate() | PresenceLeave():
                    sub = self._subs.get(frame.channel)
                    if sub is not None and sub.on_presence(frame) is Outcome.GAP:
                        self._spawn(self._resync(sub))
                case Subscribed():
                    if (sub := self._subs.get(frame.channel)) is not None:
                        sub.on_subscribed(frame)
                case _:
                    pass  # a frame type this client does not know: an extension it never asked for
        except Exception:
            log.exception("a frame the client could not handle")

    def _unasked(self, frame: ErrorFrame) -> None:
        error = GatewayError(frame.code, frame.message, frame.channel)
        if frame.code == "token_expired" and self._token_provider is not None:
            self._spawn(self._refresh_quietly())
            return
        if frame.code == "unsubscribed" and frame.channel is not None:
            sub = self._subs.pop(frame.channel, None)
            if sub is not None:
                sub._end(error)
        self._report(error)

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            # The gateway closes with 4001 after its grace; the reconnect asks the provider again.
            self._report(exc)

    async def _resync(self, sub: Subscription) -> None:
        """A presence gap: subscribe again for a fresh ``presence_sync``; a resync too soon
        after the last one is refused (``rate_limited``), so try again a little later."""
        for attempt in range(5):
            if not sub.active or not self.connected:
                return
            try:
                await self._request(sub.subscribe_frame(resync=True))
                return
            except GatewayError as exc:
                if exc.code != "rate_limited":
                    self._report(exc)
                    return
            except ConnectionLost:
                return  # the reconnect subscribes again, which syncs
            await asyncio.sleep(0.5 * (attempt + 1))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_state is not None:
                self._call(self._on_state, state)

    def _report(self, error: Exception) -> None:
        if self._on_error is not None:
            self._call(self._on_error, error)
        else:
            log.warning("%s", error)

    def _call(self, callback: Callable[[Any], None], argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("a realtime.client callback raised")
