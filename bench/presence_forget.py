"""Does the memory presence store give back the channels everyone left?

    .venv/bin/python bench/presence_forget.py

One in-process gateway in embedded mode; a client joins 1,000 channels, a second one joins and
leaves half of them, then both close. Prints how many channels the store holds once a second
for 8 s after the last leave. Reads the store's ``_channels`` dict, so it runs unchanged on
builds from before the store forgot anything.
"""

from __future__ import annotations

import asyncio
import time

from realtime.testing.gateway import make_settings, run_gateway, ws_client


async def main() -> None:
    # Joins and frames per connection uncapped (older builds ignore the variables).
    settings = make_settings(WS_MAX_PRESENCE_JOINS="0", WS_MAX_FRAMES_PER_SECOND="0")
    async with run_gateway(settings) as gw:
        store = gw.node.store
        url = gw.ws_url
        async with ws_client(url + "?user_id=a") as a, ws_client(url + "?user_id=b") as b:
            for i in range(1000):
                await a.request({"type": "presence_join", "channel": f"c{i}"})
            for i in range(500):
                await b.request({"type": "presence_join", "channel": f"c{i}"})
                await b.request({"type": "presence_leave", "channel": f"c{i}"})
        # Both connections are closed: their channels were left.
        start = time.monotonic()
        for second in range(8):
            await asyncio.sleep(max(0.0, start + second - time.monotonic()))
            held = len(store._channels)  # type: ignore[attr-defined]
            print(f"{second} s after everyone left: {held} channels held")


if __name__ == "__main__":
    asyncio.run(main())
