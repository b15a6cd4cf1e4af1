"""Property tests of the decoders: any bytes in -> a Struct or a clean FrameError."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.errors import FrameError
from realtime.wire.messages import Broadcast, ClientMessage, EventBody, decode_client, decode_event

BOUNDED = settings(max_examples=300, deadline=None)

# JSON-ish text: brackets, quotes and escapes are where parsers and depth scans go wrong.
json_like = st.text(alphabet='[]{}":,\\ab01 -.etrunfl', max_size=400)
nested = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)


def frames() -> st.SearchStrategy[bytes | str]:
    return st.one_of(
        st.binary(max_size=400),
        json_like,
        nested,
        nested.map(lambda p: '{"type":"broadcast","channel":"c","payload":' + p + "}"),
        st.text(max_size=200).map(lambda t: '{"type":"subscribe","channel":' + t + "}"),
    )


@BOUNDED
@given(frames())
def test_decode_client_returns_a_message_or_a_frame_error(data: bytes | str) -> None:
    try:
        message = decode_client(data)
    except FrameError as exc:
        assert exc.code in {"invalid_json", "unknown_type", "invalid_message"}
    else:
        assert isinstance(message, ClientMessage)


@BOUNDED
@given(frames())
def test_decode_event_returns_an_event_or_a_frame_error(data: bytes | str) -> None:
    body = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        event = decode_event(body, max_event_name=200)
    except FrameError as exc:
        assert exc.code in {"invalid_json", "invalid_event"}
    else:
        assert isinstance(event, EventBody)


@BOUNDED
@given(st.recursive(st.none() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=40))  # fmt: skip
def test_valid_json_within_the_depth_is_never_refused_for_depth(payload: object) -> None:
    raw = msgspec.json.encode({"type": "broadcast", "channel": "c", "payload": payload})
    message = decode_client(raw)
    assert isinstance(message, Broadcast)
    assert msgspec.json.decode(message.payload) == payload


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[" * 100 + '\\"{' * 100 + "\\\\"
    raw = msgspec.json.encode({"type": "broadcast", "channel": "c", "event": text, "payload": text})
    message = decode_client(raw)
    assert isinstance(message, Broadcast) and message.event == text
    assert decode_event(raw).event == text
