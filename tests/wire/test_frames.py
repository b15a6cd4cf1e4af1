from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from realtime.wire.frames import Outgoing, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_text_frame_matches_the_reference_framing(size: int) -> None:
    payload = b"x" * size
    reference = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == reference


def test_outgoing_encodes_once() -> None:
    out = Outgoing('{"a":"é"}'.encode())
    assert out.text == '{"a":"é"}'
    assert out.wire is out.wire
    assert out.text is out.text
