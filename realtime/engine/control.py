"""The server API's cluster-wide answers: a request/reply over the broadcast broker.

Every instance subscribes ``__realtime__.control`` (requests, for all) and
``__realtime__.reply.<instance>`` (answers to its own requests). A request (count channels,
disconnect a user, unsubscribe a user) goes out on the control channel, so the asking instance
hears it through its own subscriber like every other; each instance acts on its local
connections and answers on the asker's reply channel. The asker sums the answers.

How many answers to wait for: each instance says ``hello`` on the control channel at start and
every :data:`HELLO_INTERVAL` seconds; the asker waits for every instance heard from within
:data:`HELLO_EXPIRY` seconds, or ``timeout`` seconds, whichever comes first, and says whether
the answer is ``complete``. Reserved channels never reach a client (``RESERVED_PREFIX``) and a
seed gateway never subscribes them. It works on any broker through the ``Broker`` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

import msgspec

from realtime.brokers.base import Broker
from realtime.wire.messages import BROADCAST, RESERVED_PREFIX

log = logging.getLogger("realtime.engine.control")

CONTROL_CHANNEL = f"{RESERVED_PREFIX}.control"
HELLO_INTERVAL = 5.0
HELLO_EXPIRY = 3 * HELLO_INTERVAL

Op = Literal["hello", "channels", "disconnect", "unsubscribe"]


class Request(msgspec.Struct, omit_defaults=True):
    op: Op
    origin: str
    id: str = ""
    user: str = ""
    channel: str = ""
    code: int = 0
    reason: str = ""
    # channels: only names matching this glob (``*``: any characters), after ``cursor``, at
    # most ``limit`` of them (each instance's first ``limit`` after the cursor: their union's
    # first ``limit`` is exact, and a reply stays bounded).
    pattern: str = ""
    cursor: str = ""
    limit: int = 0


class Reply(msgspec.Struct, omit_defaults=True):
    id: str
    origin: str
    count: int = 0
    channels: dict[str, int] = msgspec.field(default_factory=dict)


_encode = msgspec.json.Encoder().encode
_requests = msgspec.json.Decoder(Request)
_replies = msgspec.json.Decoder(Reply)


class Gathered(msgspec.Struct):
    """Every answer to one request: how many instances answered, of how many known."""

    replies: list[Reply]
    instances: int
    complete: bool


Handler = Callable[[Request], Awaitable[Reply]]


class Control:
    """The request/reply loop; ``act`` answers a request from this instance's connections."""

    def __init__(
        self,
        broker: Broker,
        act: Handler,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.instance = uuid.uuid4().hex[:16]
        self.reply_channel = f"{RESERVED_PREFIX}.reply.{self.instance}"
        self.timeout = timeout
        self._act = act
        self._clock = clock
        self._known: dict[str, float] = {}  # instance -> when last heard (hello or reply)
        self._waiting: dict[str, tuple[list[Reply], asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.broker.subscribe(BROADCAST, CONTROL_CHANNEL)
        await self.broker.subscribe(BROADCAST, self.reply_channel)
        self._task = asyncio.create_task(self._hello(), name="control-hello")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._answers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _hello(self) -> None:
        while True:
            await self._say_hello()
            await asyncio.sleep(HELLO_INTERVAL)

    async def _say_hello(self) -> None:
        try:
            await self.broker.publish(
                BROADCAST, CONTROL_CHANNEL, _encode(Request("hello", self.instance))
            )
        except Exception as exc:  # a broker down: the next hello tries again
            log.warning("control hello not published: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def known(self) -> set[str]:
        now = self._clock()
        for instance, seen in list(self._known.items()):
            if now - seen > HELLO_EXPIRY:
                del self._known[instance]
        return {*self._known, self.instance}

    def deliver(self, channel: str, data: bytes) -> bool:
        """A message on a reserved channel; False when it is not the control plane's."""
        if channel == CONTROL_CHANNEL:
            try:
                request = _requests.decode(data)
            except msgspec.MsgspecError as exc:
                log.warning("dropped undecodable control request: %s", exc)
                return True
            new = request.origin not in self._known and request.origin != self.instance
            self._known[request.origin] = self._clock()
            if request.op != "hello":
                self._answer(request)
            elif new:
                # A newcomer: say hello back at once, so it knows of this instance before its
                # first request, not one HELLO_INTERVAL later.
                self._spawn(self._say_hello())
            return True
        if channel == self.reply_channel:
            try:
                reply = _replies.decode(data)
            except msgspec.MsgspecError as exc:
                log.warning("dropped undecodable control reply: %s", exc)
                return True
            self._known[reply.origin] = self._clock()
            waiting = self._waiting.get(reply.id)
            if waiting is not None:
                replies, event = waiting
                replies.append(reply)
                if {r.origin for r in replies} >= self.known():
                    event.set()
            return True
        return channel.startswith(f"{RESERVED_PREFIX}.reply.")  # another instance's answers

    def _answer(self, request: Request) -> None:
        # A task: acting may wait on the broker (unsubscribes) and the subscriber must not.
        self._spawn(self._act_and_reply(request))

    async def _act_and_reply(self, request: Request) -> None:
        try:
            reply = await self._act(request)
        except Exception:  # never let one bad request stop anything but itself
            log.exception("control request %r failed", request.op)
            return
        reply.id, reply.origin = request.id, self.instance
        try:
            await self.broker.publish(
                BROADCAST, f"{RESERVED_PREFIX}.reply.{request.origin}", _encode(reply)
            )
        except Exception as exc:
            log.warning("control reply not published: %s", exc)

    async def ask(self, request: Request) -> Gathered:
        """Send ``request`` to every instance (this one too) and gather the answers; raises
        BrokerError when the broker does not take the request."""
        request.origin, request.id = self.instance, uuid.uuid4().hex
        replies: list[Reply] = []
        event = asyncio.Event()
        self._waiting[request.id] = (replies, event)
        try:
            await self.broker.publish(BROADCAST, CONTROL_CHANNEL, _encode(request))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await event.wait()
        finally:
            del self._waiting[request.id]
        answered = {r.origin for r in replies}
        return Gathered(replies, len(answered), answered >= self.known())
