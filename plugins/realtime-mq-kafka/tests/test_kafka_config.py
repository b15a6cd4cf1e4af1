"""Settings parsing: defaults, every variable, and a ConfigError naming the bad one."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from realtime.brokers.registry import available, load_broker
from realtime.errors import ConfigError
from realtime.testing.gateway import make_settings
from realtime_kafka import KafkaBroker, KafkaConfig
from realtime_kafka.config import DEFAULT_MAX_MESSAGE_BYTES, parse_bootstrap


def config(**env: str) -> KafkaConfig:
    return KafkaConfig.from_settings(make_settings(BROADCAST_MQ_TYPE="kafka", **env))


def test_defaults() -> None:
    c = config(BROADCAST_MQ_ADDR="127.0.0.1:9092")
    assert c.bootstrap == ("127.0.0.1:9092",)
    assert c.topic == "realtime-broadcast"
    assert c.partitions == 6
    assert c.replication_factor is None
    assert c.create_topic is True
    assert c.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES > 1024 * 1024
    assert c.acks == "all"
    assert c.security_protocol == "PLAINTEXT"
    assert c.ssl_context() is None
    options = c.client_options()
    assert options["bootstrap_servers"] == ["127.0.0.1:9092"]
    assert "sasl_mechanism" not in options


def test_every_setting() -> None:
    c = config(
        BROADCAST_MQ_ADDR="k1:9092, k2:9093,[::1]:9094",
        BROADCAST_KAFKA_TOPIC="my.topic_1-x",
        BROADCAST_KAFKA_PARTITIONS="12",
        BROADCAST_KAFKA_REPLICATION_FACTOR="3",
        BROADCAST_KAFKA_CREATE_TOPIC="no",
        BROADCAST_KAFKA_RETENTION_MS="60000",
        BROADCAST_KAFKA_MAX_MESSAGE_BYTES="4194304",
        BROADCAST_KAFKA_ACKS="1",
        BROADCAST_KAFKA_TIMEOUT_SECONDS="2.5",
        BROADCAST_KAFKA_HEALTH_INTERVAL_SECONDS="0.5",
        BROADCAST_KAFKA_CLIENT_ID="gw-1",
        BROADCAST_KAFKA_SASL_MECHANISM="scram-sha-512",
        BROADCAST_KAFKA_SASL_USERNAME="user",
        BROADCAST_KAFKA_SASL_PASSWORD="secret",
        BROADCAST_KAFKA_TLS="true",
    )
    assert c.bootstrap == ("k1:9092", "k2:9093", "[::1]:9094")
    assert (c.topic, c.partitions, c.replication_factor) == ("my.topic_1-x", 12, 3)
    assert (c.create_topic, c.retention_ms, c.max_message_bytes) == (False, 60000, 4194304)
    assert (c.acks, c.timeout, c.health_interval, c.client_id) == ("1", 2.5, 0.5, "gw-1")
    assert c.security_protocol == "SASL_SSL"
    assert "secret" not in repr(c)
    options = c.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "user"
    assert options["request_timeout_ms"] == 2500
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_without_tls_is_sasl_plaintext() -> None:
    c = config(
        BROADCAST_MQ_ADDR="k:9092",
        BROADCAST_KAFKA_SASL_MECHANISM="PLAIN",
        BROADCAST_KAFKA_SASL_USERNAME="u",
        BROADCAST_KAFKA_SASL_PASSWORD="p",
    )
    assert c.security_protocol == "SASL_PLAINTEXT"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_MQ_ADDR": "k"}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_MQ_ADDR": "k:notaport"}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_MQ_ADDR": "k:9092,"}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_MQ_ADDR": "k:70000"}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_MQ_ADDR": "kafka://k:9092"}, "BROADCAST_MQ_ADDR"),
        ({"BROADCAST_KAFKA_TOPIC": "bad topic"}, "BROADCAST_KAFKA_TOPIC"),
        ({"BROADCAST_KAFKA_TOPIC": ".."}, "BROADCAST_KAFKA_TOPIC"),
        ({"BROADCAST_KAFKA_TOPIC": "x" * 250}, "BROADCAST_KAFKA_TOPIC"),
        ({"BROADCAST_KAFKA_PARTITIONS": "0"}, "BROADCAST_KAFKA_PARTITIONS"),
        ({"BROADCAST_KAFKA_PARTITIONS": "six"}, "BROADCAST_KAFKA_PARTITIONS"),
        ({"BROADCAST_KAFKA_REPLICATION_FACTOR": "0"}, "BROADCAST_KAFKA_REPLICATION_FACTOR"),
        ({"BROADCAST_KAFKA_CREATE_TOPIC": "maybe"}, "BROADCAST_KAFKA_CREATE_TOPIC"),
        ({"BROADCAST_KAFKA_RETENTION_MS": "10"}, "BROADCAST_KAFKA_RETENTION_MS"),
        ({"BROADCAST_KAFKA_MAX_MESSAGE_BYTES": "1k"}, "BROADCAST_KAFKA_MAX_MESSAGE_BYTES"),
        ({"BROADCAST_KAFKA_ACKS": "0"}, "BROADCAST_KAFKA_ACKS"),
        ({"BROADCAST_KAFKA_TIMEOUT_SECONDS": "0"}, "BROADCAST_KAFKA_TIMEOUT_SECONDS"),
        ({"BROADCAST_KAFKA_TIMEOUT_SECONDS": "inf"}, "BROADCAST_KAFKA_TIMEOUT_SECONDS"),
        (
            {"BROADCAST_KAFKA_HEALTH_INTERVAL_SECONDS": "-1"},
            "BROADCAST_KAFKA_HEALTH_INTERVAL_SECONDS",
        ),
        ({"BROADCAST_KAFKA_SASL_MECHANISM": "GSSAPI"}, "BROADCAST_KAFKA_SASL_MECHANISM"),
        ({"BROADCAST_KAFKA_SASL_USERNAME": "u"}, "BROADCAST_KAFKA_SASL_MECHANISM"),
        (
            {"BROADCAST_KAFKA_SASL_MECHANISM": "PLAIN", "BROADCAST_KAFKA_SASL_PASSWORD": "p"},
            "BROADCAST_KAFKA_SASL_USERNAME",
        ),
        (
            {"BROADCAST_KAFKA_SASL_MECHANISM": "PLAIN", "BROADCAST_KAFKA_SASL_USERNAME": "u"},
            "BROADCAST_KAFKA_SASL_PASSWORD",
        ),
        ({"BROADCAST_KAFKA_TLS": "sometimes"}, "BROADCAST_KAFKA_TLS"),
        ({"BROADCAST_KAFKA_TLS_CA_FILE": "/nonexistent/ca.pem"}, "BROADCAST_KAFKA_TLS_CA_FILE"),
        ({"BROADCAST_KAFKA_TLS_CERT_FILE": "/nonexistent/c.pem"}, "BROADCAST_KAFKA_TLS_CERT_FILE"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], variable: str) -> None:
    base = {"BROADCAST_MQ_ADDR": "127.0.0.1:9092"} if variable != "BROADCAST_MQ_ADDR" else {}
    with pytest.raises(ConfigError) as caught:
        config(**{**base, **env})
    assert caught.value.variable == variable


def test_tls_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    base = {"BROADCAST_MQ_ADDR": "k:9093"}
    with pytest.raises(ConfigError) as caught:
        config(**base, BROADCAST_KAFKA_TLS_CERT_FILE=str(junk))
    assert caught.value.variable == "BROADCAST_KAFKA_TLS_KEY_FILE"  # cert and key go together
    with pytest.raises(ConfigError) as caught:
        config(**base, BROADCAST_KAFKA_TLS="0", BROADCAST_KAFKA_TLS_CA_FILE=str(junk))
    assert caught.value.variable == "BROADCAST_KAFKA_TLS"
    # A file that exists but holds no certificate fails at start, not at the first connect.
    with pytest.raises(ConfigError) as caught:
        config(**base, BROADCAST_KAFKA_TLS_CA_FILE=str(junk))
    assert caught.value.variable == "BROADCAST_KAFKA_TLS"
    assert "junk.pem" in str(caught.value) or "cannot load" in str(caught.value)


def test_parse_bootstrap_strips_spaces() -> None:
    assert parse_bootstrap(" a:1 ,b:2") == ("a:1", "b:2")


def test_registered_as_kafka_entry_point() -> None:
    assert "kafka" in available()
    settings = make_settings(BROADCAST_MQ_TYPE="kafka", BROADCAST_MQ_ADDR="127.0.0.1:9092")
    broker = load_broker("kafka", settings)
    assert isinstance(broker, KafkaBroker)
    assert not broker.ready
    with pytest.raises(ConfigError) as caught:
        load_broker("kafka", make_settings(BROADCAST_MQ_TYPE="kafka"))
    assert caught.value.variable == "BROADCAST_MQ_ADDR"
