"""``realtime listen CHANNEL``: a terminal subscriber; every frame the gateway sends is printed
as one JSON line (the token, if any, from ``REALTIME_TOKEN``, sent as a header). Built on
:class:`realtime.client.Client`, without reconnecting: the exit code says how it closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from realtime.client import Client, ConnectError, GatewayError


async def listen(url: str, channel: str, user: str | None, presence: bool) -> int:
    client = Client(
        url,
        user_id=user or None,
        token=os.environ.get("REALTIME_TOKEN") or None,
        reconnect=False,
        on_frame=lambda frame: print(frame, flush=True),
        # Errors are frames, printed as they come: nothing more to say about them.
        on_error=lambda error: None,
    )
    listen = ("broadcast", "presence") if presence else ("broadcast",)
    async with client:
        # A refusal's error frame was printed; the connection stays open, as the gateway's.
        with contextlib.suppress(GatewayError):
            # recover=False: the plain subscribe the gateway answers with no extra frame.
            await client.subscribe(channel, listen=listen, recover=False)
        await client.wait_closed()
    close = client.close_code
    print(f"realtime listen: closed with {close} {client.close_reason}", file=sys.stderr)
    return 0 if close in (1000, 1001) else 1


def run(url: str, channel: str, user: str | None, presence: bool) -> int:
    try:
        return asyncio.run(listen(url, channel, user, presence))
    except KeyboardInterrupt:
        return 0
    except ConnectError as exc:  # a refused upgrade (401, 403, 503)
        detail = f" ({exc.error})" if exc.error else ""
        print(
            f"realtime listen: server rejected WebSocket connection: HTTP {exc.status}{detail}",
            file=sys.stderr,
        )
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"realtime listen: {url} did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"realtime listen: {exc}", file=sys.stderr)
        return 1
