"""Routing-key encoding, without a server."""

from __future__ import annotations

import pytest

from realtime_rabbitmq.routing import (
    CHANNEL_HEADER,
    KIND_HEADER,
    headers,
    is_plain,
    routing_key,
    target,
)


@pytest.mark.parametrize("name", ["room1", "a-b_c", "user:42", "team@acme/ops", "x" * 200])
def test_plain_names_travel_as_they_are(name: str) -> None:
    assert is_plain(name)
    assert routing_key("broadcast", name) == f"broadcast.{name}"
    assert target(f"presence.{name}", None) == ("presence", name)


@pytest.mark.parametrize(
    "name",
    ["*", "#", "a.b", "a.*", "#.x", "", " ", "~", "é", "x" * 201, "é" * 200, "a\x00b", "\ud800"],
)
def test_other_names_are_hashed_into_one_inert_word(name: str) -> None:
    key = routing_key("broadcast", name)
    kind, _, word = key.partition(".")
    assert kind == "broadcast"
    assert word.startswith("~") and len(word) == 41
    assert all(c in "0123456789abcdef" for c in word[1:])
    assert "." not in word and "*" not in word and "#" not in word
    assert len(key.encode()) <= 255


def test_every_key_fits_the_routing_key_limit() -> None:
    for name in ["x" * 200, "é" * 200, "🎉" * 200, "a." * 100]:
        for kind in ("broadcast", "presence"):
            assert len(routing_key(kind, name).encode()) <= 255  # type: ignore[arg-type]


def test_keys_differ_per_kind_and_channel() -> None:
    names = ["*", "#", "a.b", "a_b", "a-b", "é", "e", "~", "x" * 200, "x" * 201]
    keys = {routing_key(kind, n) for kind in ("broadcast", "presence") for n in names}  # type: ignore[arg-type]
    assert len(keys) == 2 * len(names)


def test_headers_name_the_exact_channel() -> None:
    for name in ["room1", "*", "é" * 200]:
        key = routing_key("presence", name)
        assert target(key, headers("presence", name)) == ("presence", name)


def test_headers_must_agree_with_the_key() -> None:
    # Routed to room1's binding but claiming another channel: never delivered as that one.
    assert target("broadcast.room1", headers("broadcast", "room2")) is None
    assert target("broadcast.room1", headers("presence", "room1")) is None


def test_foreign_messages() -> None:
    # Another AMQP client may publish on a plain key without our headers.
    assert target("broadcast.room1", {}) == ("broadcast", "room1")
    assert target("broadcast.room1", {"other": "x"}) == ("broadcast", "room1")
    # A hashed key says nothing without headers; an unknown kind is not ours.
    assert target(routing_key("broadcast", "*"), None) is None
    assert target("chat.room1", None) is None
    assert target("broadcast.a.b", None) is None
    # Header values may arrive as bytes.
    raw = {KIND_HEADER: b"broadcast", CHANNEL_HEADER: "é".encode()}
    assert target(routing_key("broadcast", "é"), raw) == ("broadcast", "é")
