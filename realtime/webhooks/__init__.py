"""Webhooks: channel occupied/vacated and member added/removed, POSTed to the app's backend,
signed, batched, retried; exactly one per cluster event (docs/webhooks.md)."""

from __future__ import annotations

from typing import Protocol


class Webhooks(Protocol):
    """The deliverer the node starts and closes; ``dropped`` counts events lost to a full
    queue (embedded: this process's; Redis: the cluster's)."""

    dropped: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...
