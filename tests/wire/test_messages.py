from __future__ import annotations

import json

import msgspec
import pytest

from realtime.errors import FrameError
from realtime.wire.messages import (
    Broadcast,
    Member,
    PresenceJoin,
    Subscribe,
    bus_broadcast,
    bus_presence,
    client_frame,
    decode_bus,
    decode_client,
)


def test_subscribe_defaults_to_both_kinds() -> None:
    message = decode_client(b'{"type":"subscribe","channel":"room1"}')
    assert message == Subscribe(channel="room1", listen=["broadcast", "presence"])


def test_broadcast_keeps_payload_bytes() -> None:
    message = decode_client('{"type":"broadcast","channel":"c","event":"e","payload":{"a": [1,2]}}')
    assert isinstance(message, Broadcast)
    assert bytes(message.payload) == b'{"a": [1,2]}'


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[1,2]", "invalid_message"),
        (b'{"type":"shout","channel":"c"}', "unknown_type"),
        (b'{"channel":"c"}', "unknown_type"),
        (b'{"type":"broadcast"}', "invalid_message"),
        (b'{"type":"subscribe","channel":"c","listen":["everything"]}', "invalid_message"),
        (b'{"type":"subscribe","channel":""}', "invalid_message"),
        (b'{"type":"presence_join","channel":"c","payload":[1]}', "invalid_message"),
    ],
)
def test_bad_frames_raise_frame_error(frame: bytes, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_client(frame)
    assert info.value.code == code
    assert info.value.message


def test_presence_join_meta_is_an_object() -> None:
    message = decode_client(b'{"type":"presence_join","channel":"c","payload":{"name":"A"}}')
    assert message == PresenceJoin(channel="c", payload={"name": "A"})


def test_bus_broadcast_matches_the_seed_form() -> None:
    data = json.loads(bus_broadcast("room1", "user-message", msgspec.Raw(b'{"t":1}'), "u1"))
    assert data["type"] == "broadcast"
    assert data["channel_id"] == "room1"
    assert data["user_id"] == "u1"
    assert data["event"] == "user-message"
    assert data["payload"] == {"t": 1}
    assert "meta" in data  # the seed's encoder always writes meta
    assert isinstance(data["ts"], int)


def test_bus_broadcast_from_http_omits_user_id() -> None:
    data = json.loads(bus_broadcast("room1", "e", msgspec.Raw(b"1")))
    assert "user_id" not in data
    frame = json.loads(
        client_frame(decode_bus(bus_broadcast("room1", "e", msgspec.Raw(b"1")))).data
    )
    assert "user_id" not in frame
    assert frame["payload"] == 1


def test_seed_encoded_broadcast_decodes() -> None:
    # What the Go seed writes: meta always present with empty values.
    seed = (
        b'{"type":"broadcast","channel_id":"room1","user_id":"u","event":"e",'
        b'"payload":{"x":1},"meta":{"user_id":"","meta":null,"updated_at":0},"ts":1700000000000}'
    )
    frame = json.loads(client_frame(decode_bus(seed)).data)
    assert frame == {
        "type": "broadcast",
        "channel": "room1",
        "event": "e",
        "payload": {"x": 1},
        "user_id": "u",
        "ts": 1700000000000,
    }


def test_presence_round_trip_to_client_frame() -> None:
    bus = bus_presence("presence_join", "room1", Member("u1", {"name": "A"}, 1620000000))
    frame = json.loads(client_frame(decode_bus(bus)).data)
    assert frame["type"] == "presence_join"
    assert frame["user_id"] == "u1"
    assert frame["meta"] == {"name": "A"}
    assert frame["updated_at"] == 1620000000
    assert isinstance(frame["ts"], int)


def test_leave_omits_empty_meta_and_zero_updated_at() -> None:
    seed = (
        b'{"type":"presence_leave","channel_id":"c","meta":{"user_id":"u","updated_at":0},"ts":5}'
    )
    frame = json.loads(client_frame(decode_bus(seed)).data)
    assert frame == {"type": "presence_leave", "channel": "c", "user_id": "u", "ts": 5}
