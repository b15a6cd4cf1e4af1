"""Settings of the RabbitMQ plugin, without a server."""

from __future__ import annotations

import pytest

from realtime.brokers.registry import load_broker
from realtime.errors import ConfigError
from realtime.testing.gateway import make_settings
from realtime_rabbitmq import RabbitMQBroker, RabbitMQOptions

URL = "amqp://user:secret@mq.example:5672/vh"


def opts(**env: str) -> RabbitMQOptions:
    return RabbitMQOptions.from_settings(make_settings(BROADCAST_MQ_TYPE="rabbitmq", **env))


def test_defaults() -> None:
    o = opts(BROADCAST_RABBITMQ_URL=URL)
    assert (o.url, o.exchange, o.exchange_type) == (URL, "realtime", "topic")
    assert (o.publish_timeout, o.reconnect_interval, o.prefetch) == (5.0, 0.5, 256)


def test_url_falls_back_to_mq_addr_when_it_is_amqp() -> None:
    assert opts(BROADCAST_MQ_ADDR="amqps://h:5671/").url == "amqps://h:5671/"
    assert opts(BROADCAST_MQ_ADDR="amqp://a/", BROADCAST_RABBITMQ_URL=URL).url == URL


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_MQ_ADDR": "127.0.0.1:5672"}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_MQ_ADDR": "redis://h:6379"}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_RABBITMQ_URL": "http://h/"}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_RABBITMQ_URL": "amqp:///vh"}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_RABBITMQ_URL": "amqp://h:port/"}, "BROADCAST_RABBITMQ_URL"),
        ({"BROADCAST_MQ_ADDR": "amqp://h:99999/"}, "BROADCAST_MQ_ADDR"),
    ],
)
def test_bad_or_missing_url(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        opts(**env)
    assert caught.value.variable == variable
    assert variable in str(caught.value)


@pytest.mark.parametrize("kind", ["topic", "direct", "TOPIC", " direct "])
def test_supported_exchange_types(kind: str) -> None:
    chosen = opts(BROADCAST_RABBITMQ_URL=URL, BROADCAST_RABBITMQ_EXCHANGE_TYPE=kind)
    assert chosen.exchange_type == kind.strip().lower()


@pytest.mark.parametrize("kind", ["fanout", "headers", "x-consistent-hash", "nonsense"])
def test_other_exchange_types_are_refused(kind: str) -> None:
    with pytest.raises(ConfigError) as caught:
        opts(BROADCAST_RABBITMQ_URL=URL, BROADCAST_RABBITMQ_EXCHANGE_TYPE=kind)
    assert caught.value.variable == "BROADCAST_RABBITMQ_EXCHANGE_TYPE"


@pytest.mark.parametrize("name", ["amq.topic", "a b", "é", "x" * 256])
def test_bad_exchange_names(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        opts(BROADCAST_RABBITMQ_URL=URL, BROADCAST_RABBITMQ_EXCHANGE=name)
    assert caught.value.variable == "BROADCAST_RABBITMQ_EXCHANGE"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BROADCAST_RABBITMQ_PUBLISH_TIMEOUT_SECONDS", "0"),
        ("BROADCAST_RABBITMQ_PUBLISH_TIMEOUT_SECONDS", "soon"),
        ("BROADCAST_RABBITMQ_RECONNECT_SECONDS", "nan"),
        ("BROADCAST_RABBITMQ_PREFETCH", "0"),
        ("BROADCAST_RABBITMQ_PREFETCH", "1.5"),
    ],
)
def test_bad_numbers(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        opts(BROADCAST_RABBITMQ_URL=URL, **{variable: value})
    assert caught.value.variable == variable


def test_numbers() -> None:
    o = opts(
        BROADCAST_RABBITMQ_URL=URL,
        BROADCAST_RABBITMQ_EXCHANGE="events.v1",
        BROADCAST_RABBITMQ_PUBLISH_TIMEOUT_SECONDS="2.5",
        BROADCAST_RABBITMQ_RECONNECT_SECONDS="1",
        BROADCAST_RABBITMQ_PREFETCH="10",
    )
    assert (o.exchange, o.publish_timeout, o.reconnect_interval, o.prefetch) == (
        "events.v1",
        2.5,
        1.0,
        10,
    )


def test_password_is_hidden_in_display_and_repr() -> None:
    o = opts(BROADCAST_RABBITMQ_URL=URL)
    assert "secret" not in o.display_url and "secret" not in repr(o)
    assert o.display_url == "amqp://user:***@mq.example:5672/vh"


def test_registered_as_entry_point() -> None:
    broker = load_broker("rabbitmq", make_settings(BROADCAST_RABBITMQ_URL=URL))
    assert isinstance(broker, RabbitMQBroker)
    assert broker.options.url == URL
    assert not broker.ready
