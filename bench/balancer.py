"""Two gateways on Redis behind Debian's nginx: the figures docs/deployment.md quotes.

    python -m bench.balancer rebalance    # new clients after a restart, per nginx configuration
    python -m bench.balancer idle         # an idle WebSocket through nginx, ping on and off

``rebalance``: 16 clients connect through nginx, instance 1 gets SIGTERM (its clients move
to instance 2), instance 1 comes back on its port 2 s later, and 16 new clients connect: how
many land on each instance, with nginx's defaults (round-robin, max_fails=1, fail_timeout=10s),
with ``least_conn`` alone, and with deploy/nginx/realtime.conf (``least_conn`` and
``max_fails=0``). Each configuration is the recipe with lines taken out, so only those differ.

``idle``: one client through the recipe, subscribed and silent, with
``WS_PING_INTERVAL_SECONDS=0`` and with the default 20: how long each connection lives
(bounded at ``--idle-limit`` seconds, default 90) and how it ends.

Needs redis-server and nginx (scripts/install-services redis nginx). Everything listens on
127.0.0.1 and stops at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import native_redis, nginx_server
from realtime.testing.waiting import free_port, wait_until_async
from tests.deployment.recipe import NGINX_RECIPE, nginx_site, render

CLIENTS = 16
RECIPE = "recipe (least_conn, max_fails=0)"

VARIANTS: dict[str, Callable[[str], str]] = {
    "nginx defaults (round-robin, max_fails=1)": lambda text: text.replace(
        "    least_conn;\n", ""
    ).replace(" max_fails=0;", ";"),
    "least_conn, max_fails=1": lambda text: text.replace(" max_fails=0;", ";"),
    RECIPE: lambda text: text,
}


def site_for(variant: Callable[[str], str], upstreams: list[str]) -> Callable[[int], str]:
    recipe = NGINX_RECIPE.read_text()
    text = variant(recipe)
    if variant is not VARIANTS[RECIPE]:
        # A variant that changes nothing would measure the recipe under another name.
        assert text != recipe, "the recipe no longer has the lines this variant takes out"

    def site(port: int) -> str:
        values = {"REALTIME_LISTEN": f"127.0.0.1:{port}"}
        values.update({f"REALTIME_GATEWAY_{i}": g for i, g in enumerate(upstreams, 1)})
        return render(text, values)

    return site


async def count(http: httpx.AsyncClient, gateway: GatewayProcess) -> int:
    n: int = (await http.get(gateway.url + "/healthz")).json()["connections"]
    return n


async def rebalance(name: str, variant: Callable[[str], str], redis_url: str, tmp: Path) -> None:
    ports = [free_port(), free_port()]
    upstreams = [f"127.0.0.1:{p}" for p in ports]
    env = {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "redis", "REDIS_URL": redis_url}
    async with (
        httpx.AsyncClient(timeout=5) as http,
        spawn_gateway(env, str(tmp / "g1.log"), port=ports[0]) as g1,
        spawn_gateway(env, str(tmp / "g2.log"), port=ports[1]) as g2,
    ):
        with nginx_server(site_for(variant, upstreams)) as lb:
            ws = lb.url.replace("http://", "ws://") + "/ws"
            async with contextlib.AsyncExitStack() as old:
                movers = [reconnecting(f"{ws}?user_id=old-{i}") for i in range(CLIENTS)]
                tasks = [asyncio.ensure_future(m) for m in movers]
                old.callback(lambda: [t.cancel() for t in tasks])
                await wait_until_async(
                    lambda: both(http, g1, g2, CLIENTS), 10, message="old clients connected"
                )
                before = (await count(http, g1), await count(http, g2))
                g1.process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(g1.process.wait, 20)
                await wait_until_async(
                    lambda: at(http, g2, CLIENTS), 20, message="old clients all on instance 2"
                )
                await asyncio.sleep(2)
                async with spawn_gateway(env, str(tmp / "g1b.log"), port=ports[0]) as g1b:
                    async with contextlib.AsyncExitStack() as new:
                        for i in range(CLIENTS):
                            await new.enter_async_context(ws_client(f"{ws}?user_id=new-{i}"))
                        await wait_until_async(
                            lambda: both(http, g1b, g2, 2 * CLIENTS), 5, message="new clients"
                        )
                        on_1 = await count(http, g1b)
                        on_2 = await count(http, g2) - CLIENTS
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"{name:45} first {CLIENTS}: {before[0]}/{before[1]};"
        f" after the restart, new {CLIENTS}: instance 1 {on_1}, instance 2 {on_2}"
    )


async def both(http: httpx.AsyncClient, a: GatewayProcess, b: GatewayProcess, n: int) -> bool:
    return await count(http, a) + await count(http, b) == n


async def at(http: httpx.AsyncClient, g: GatewayProcess, n: int) -> bool:
    return await count(http, g) == n


async def reconnecting(url: str) -> None:
    while True:
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            async with connect(url, open_timeout=5) as ws:
                await ws.wait_closed()
        await asyncio.sleep(0.05)


async def idle(ping: str, limit: float, redis_url: str, tmp: Path) -> None:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis_url,
        "WS_PING_INTERVAL_SECONDS": ping,
    }
    async with spawn_gateway(env, str(tmp / f"idle-{ping}.log")) as g:
        upstream = g.url.removeprefix("http://")
        with nginx_server(lambda port: nginx_site(port, [upstream, upstream])) as lb:
            ws_url = lb.url.replace("http://", "ws://") + f"/ws?user_id=idle-{ping}"
            began = time.monotonic()
            # The client library's own pings off: only the gateway's may keep it alive.
            async with ws_client(ws_url, ping_interval=None) as client:
                await client.subscribe("idle-room", "broadcast")
                try:
                    await asyncio.wait_for(client.ws.wait_closed(), limit)
                    code = client.ws.close_code
                    ended = f"closed after {time.monotonic() - began:.1f} s, code {code}"
                except TimeoutError:
                    ended = f"still open after {limit:.0f} s"
    print(f"WS_PING_INTERVAL_SECONDS={ping:3}: {ended}")


@contextlib.asynccontextmanager
async def redis_url() -> AsyncIterator[str]:
    with native_redis() as redis:
        yield redis.url


async def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("what", choices=["rebalance", "idle"])
    args.add_argument("--idle-limit", type=float, default=90.0)
    options = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        async with redis_url() as url:
            if options.what == "rebalance":
                for name, variant in VARIANTS.items():
                    await rebalance(name, variant, url, Path(tmp))
            else:
                await asyncio.gather(
                    idle("0", options.idle_limit, url, Path(tmp)),
                    idle("20", options.idle_limit, url, Path(tmp)),
                )


if __name__ == "__main__":
    asyncio.run(main())
