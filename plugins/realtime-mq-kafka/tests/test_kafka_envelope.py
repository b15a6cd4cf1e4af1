"""Kind and channel in headers, payload untouched: encode/decode without a server."""

from __future__ import annotations

import pytest

from realtime_kafka import envelope


@pytest.mark.parametrize("kind", ["broadcast", "presence"])
@pytest.mark.parametrize("channel", ["room", "a.b.c", "x:y/z", "*", "#", "é ü 漢", ""])
def test_round_trip(kind: str, channel: str) -> None:
    headers = envelope.headers(kind, channel)  # type: ignore[arg-type]
    assert envelope.target(headers) == (kind, channel)
    assert envelope.key(channel) == channel.encode()


def test_foreign_records_are_skipped() -> None:
    assert envelope.target(None) is None
    assert envelope.target([]) is None
    assert envelope.target([("other", b"x")]) is None
    good = dict(envelope.headers("broadcast", "c"))
    for missing in good:
        assert envelope.target([(k, v) for k, v in good.items() if k != missing]) is None
    assert envelope.target([*good.items(), (envelope.H_VERSION, b"2")]) is None  # last wins
    changed = {**good, envelope.H_KIND: b"whisper"}
    assert envelope.target(list(changed.items())) is None
    changed = {**good, envelope.H_CHANNEL: b"\xff\xfe"}
    assert envelope.target(list(changed.items())) is None
