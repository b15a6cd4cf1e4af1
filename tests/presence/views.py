"""A client's view of one channel's members, built only from the frames it received."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import Client, ws_client


@dataclass
class View:
    """Applies presence frames in order and checks that their sequence numbers follow on."""

    channel: str
    members: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    syncs: int = 0
    _partial: dict[str, Any] = field(default_factory=dict)

    def apply(self, frame: dict[str, Any]) -> None:
        if frame.get("channel") != self.channel:
            return
        self.frames.append(frame)
        kind = frame["type"]
        if kind == "presence_sync":
            users = {u["user_id"]: u.get("meta", {}) for u in frame["users"]}
            if frame.get("chunks", 0) > 1:
                self._partial.update(users)
                if frame["chunk"] < frame["chunks"]:
                    return
                users, self._partial = self._partial, {}
            self.members = users
            self.version = frame["version"]
            self.syncs += 1
        elif kind in ("presence_join", "presence_update", "presence_leave"):
            self._follow(frame["seq"], frame["seq"])
            if kind == "presence_leave":
                if self.members.pop(frame["user_id"], None) is None:
                    self.errors.append(f"leave of an absent member: {frame}")
            else:
                if kind == "presence_join" and frame["user_id"] in self.members:
                    self.errors.append(f"join of a present member: {frame}")
                self.members[frame["user_id"]] = frame.get("meta", {})
        elif kind == "presence_diff":
            self._follow(frame["from_seq"], frame["seq"])
            for user_id in frame["leaves"]:
                self.members.pop(user_id, None)
            for user in frame["joins"]:
                self.members[user["user_id"]] = user.get("meta", {})

    def _follow(self, first: int, last: int) -> None:
        if self.version is None:
            self.errors.append(f"event {first} before any sync")
        elif first != self.version + 1:
            self.errors.append(f"event {first} after version {self.version}")
        self.version = last


@dataclass
class Watcher:
    client: Client
    view: View
    task: asyncio.Task[None] | None = None

    async def subscribe(self, **extra: Any) -> None:
        """Subscribe (ack awaited) and keep applying every frame in the background."""
        await self.client.send(
            {
                "type": "subscribe",
                "channel": self.view.channel,
                "listen": ["presence"],
                "ref": "sub",
                **extra,
            }
        )
        while True:
            frame = await self.client.recv()
            if frame.get("type") == "ack":
                break
            assert frame.get("type") != "error", frame
            self.view.apply(frame)
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.client.ws:
                self.view.apply(json.loads(raw))

    def users(self) -> set[str]:
        return set(self.view.members)


@contextlib.asynccontextmanager
async def watching(url: str, channel: str, user: str = "watcher") -> AsyncIterator[Watcher]:
    async with ws_client(f"{url}?user_id={user}", max_size=None) as client:
        watcher = Watcher(client, View(channel))
        try:
            yield watcher
        finally:
            if watcher.task is not None:
                watcher.task.cancel()
                await asyncio.gather(watcher.task, return_exceptions=True)
