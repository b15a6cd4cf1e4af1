"""The client's pure parts: the presence list, the backoff, the URL, the frame decoder."""

from __future__ import annotations

import doctest
import random
from types import ModuleType

import pytest

import realtime.client as client_package
import realtime.client.backoff as backoff_module
import realtime.client.client as client_module
from realtime.client import (
    Backoff,
    Broadcast,
    Member,
    Position,
    PresenceSync,
    Subscribed,
    Subscription,
    SubscriptionOverflow,
    ws_url,
)
from realtime.client.messages import PresenceJoin, PresenceLeave, PresenceUpdate, decode
from realtime.client.presence import Outcome, PresenceState


def sync(version: int, *users: str, chunk: int = 0, chunks: int = 0) -> PresenceSync:
    members = [Member(user_id=u, meta={"v": version}) for u in users]
    return PresenceSync(channel="c", users=members, version=version, chunk=chunk, chunks=chunks)


def join(user: str, seq: int, **meta: object) -> PresenceJoin:
    return PresenceJoin(channel="c", user_id=user, meta=dict(meta), seq=seq)


def test_events_apply_in_seq_order_after_a_sync() -> None:
    state = PresenceState()
    assert state.apply(join("a", 1)) is Outcome.UNSYNCED
    assert state.sync(sync(4, "a"))
    assert state.apply(join("b", 5)) is Outcome.APPLIED
    assert state.apply(PresenceUpdate(channel="c", user_id="a", meta={"n": 2}, seq=6)) is (
        Outcome.APPLIED
    )
    assert state.apply(join("b", 5)) is Outcome.STALE  # a duplicate changes nothing
    assert state.apply(PresenceLeave(channel="c", user_id="b", seq=7)) is Outcome.APPLIED
    assert dict(state.members) == {"a": Member(user_id="a", meta={"n": 2})}
    assert state.version == 7


def test_a_gap_stops_events_until_a_fresh_sync() -> None:
    state = PresenceState()
    state.sync(sync(1, "a"))
    assert state.apply(join("b", 3)) is Outcome.GAP
    assert state.apply(join("c", 4)) is Outcome.UNSYNCED  # no second resync asked for
    assert set(state.members) == {"a"}
    state.sync(sync(4, "a", "b", "c"))
    assert state.apply(PresenceLeave(channel="c", user_id="a", seq=5)) is Outcome.APPLIED
    assert set(state.members) == {"b", "c"}


def test_seed_events_without_seq_apply_as_they_come() -> None:
    state = PresenceState()
    state.sync(sync(0))
    assert state.apply(join("a", 0)) is Outcome.APPLIED
    assert state.apply(PresenceLeave(channel="c", user_id="a")) is Outcome.APPLIED
    assert dict(state.members) == {}


def test_a_chunked_sync_replaces_the_list_once_complete() -> None:
    state = PresenceState()
    state.sync(sync(1, "old"))
    assert not state.sync(sync(2, "a", chunk=1, chunks=2))
    assert set(state.members) == {"old"}
    assert state.sync(sync(2, "b", chunk=2, chunks=2))
    assert set(state.members) == {"a", "b"} and state.version == 2


def test_forget_waits_for_the_next_sync() -> None:
    state = PresenceState()
    state.sync(sync(1, "a"))
    state.forget()
    assert set(state.members) == {"a"}  # last known, still readable
    assert state.apply(join("b", 2)) is Outcome.UNSYNCED


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(base=0.5, cap=4)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(4, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(backoff.delay(3, rng), 6) for _ in range(20)}) > 1  # jittered
    assert backoff.delay(10_000) <= 4
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_ws_url_from_a_base_or_ws_url() -> None:
    assert ws_url("http://h:8080") == "ws://h:8080/ws"
    assert ws_url("https://h/prefix/", "a b") == "wss://h/prefix/ws?user_id=a+b"
    assert ws_url("ws://h:1/ws?x=1", "u") == "ws://h:1/ws?x=1&user_id=u"
    with pytest.raises(ValueError):
        ws_url("h:8080")


def test_decode_types_frames_and_skips_unknown_ones() -> None:
    frame = decode('{"type":"broadcast","channel":"c","event":"e","payload":[1],"new":true}')
    assert frame == Broadcast(channel="c", event="e", payload=[1])
    assert decode('{"type":"presence_diff","channel":"c"}') is None
    assert decode("not json") is None


class FakeClient:
    def __init__(self) -> None:
        self.reported: list[Exception] = []

    def _report(self, error: Exception) -> None:
        self.reported.append(error)


def subscription(client: FakeClient, max_queue: int = 100) -> Subscription:
    return Subscription(client, "h", ("broadcast",), True, None, max_queue)  # type: ignore[arg-type]


def b(offset: int, epoch: str = "e1") -> Broadcast:
    return Broadcast(channel="h", payload=offset, offset=offset, epoch=epoch)


def test_a_history_broadcast_reaches_the_queue_once() -> None:
    sub = subscription(FakeClient())
    assert sub.subscribe_frame()["history"] == 0  # a first position, even before a broadcast
    sub.on_subscribed(Subscribed(channel="h", offset=2, epoch="e1"))
    assert sub.position == Position(2, "e1")
    for message in (b(2), b(3), b(4)):
        sub.on_broadcast(message)
    # A reconnect recovers from the last one handed over; the replay overlaps live delivery.
    assert sub.subscribe_frame()["since"] == {"offset": 4, "epoch": "e1"}
    sub.on_subscribed(Subscribed(channel="h", offset=6, epoch="e1", recovered=True))
    for message in (b(4), b(5), b(6), b(5), b(7)):
        sub.on_broadcast(message)
    # Another epoch (history lost) starts again at 1.
    sub.on_broadcast(b(1, "e2"))
    queued = [m.offset if isinstance(m, Broadcast) else "subscribed" for m in sub._queue]
    assert queued == [3, 4, "subscribed", 5, 6, 7, 1]
    assert sub.position == Position(1, "e2")


def test_not_recovered_takes_the_gateway_position() -> None:
    sub = subscription(FakeClient())
    sub.position = Position(3, "old")
    sub.on_subscribed(Subscribed(channel="h", offset=9, epoch="new", recovered=False))
    assert sub.position == Position(9, "new")
    assert isinstance(sub._queue[0], Subscribed) and sub._queue[0].recovered is False
    assert "since" not in sub.subscribe_frame(resync=True)


async def test_a_full_queue_drops_and_reports() -> None:
    client = FakeClient()
    sub = subscription(client, max_queue=2)
    for offset in range(1, 5):
        sub.on_broadcast(b(offset))
    assert sub.dropped == 2 and len(client.reported) == 1
    assert isinstance(client.reported[0], SubscriptionOverflow)
    assert [m.offset for m in [await anext(sub), await anext(sub)]] == [1, 2]  # type: ignore[union-attr]
    sub.on_broadcast(b(5))
    sub.on_broadcast(b(6))
    sub.on_broadcast(b(7))  # a second run of drops is reported again
    assert sub.dropped == 3 and len(client.reported) == 2
    sub._end(None)
    assert [m.offset for m in [await anext(sub), await anext(sub)]] == [5, 6]  # type: ignore[union-attr]
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


@pytest.mark.parametrize(
    "module", [client_package, client_module, backoff_module], ids=lambda m: m.__name__
)
def test_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
