from __future__ import annotations

from pathlib import Path

import pytest

from realtime.config import OPTIONS, Option, load_settings
from realtime.errors import ConfigError


def test_seed_defaults() -> None:
    settings = load_settings({}, env_file=None)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.presence_ttl == 60
    assert settings.broker == "redis"
    assert settings.presence_store == "redis"
    assert settings.cors_origins == ("*",)
    assert settings.jwt_secret is None
    assert settings.jwt_user_claim == "sub"


def test_redis_parts_build_a_url() -> None:
    settings = load_settings(
        {"REDIS_ADDR": "10.1.2.3:6380", "REDIS_PASSWORD": "p@ss:w", "REDIS_DB": "3"}, env_file=None
    )
    assert settings.redis.url == "redis://:p%40ss%3Aw@10.1.2.3:6380/3"
    assert "p@ss" not in settings.redis.display


def test_redis_url_wins_over_parts() -> None:
    settings = load_settings(
        {"REDIS_URL": "rediss://cache:6390/2", "REDIS_ADDR": "ignored:1"}, env_file=None
    )
    assert settings.redis.url == "rediss://cache:6390/2"


def test_server_addr_with_host() -> None:
    settings = load_settings({"SERVER_ADDR": "127.0.0.1:9000"}, env_file=None)
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRESENCE_TTL_SECONDS", "abc"),
        ("PRESENCE_TTL_SECONDS", "0"),
        ("SERVER_ADDR", "nonsense"),
        ("SERVER_ADDR", ":99999"),
        ("REDIS_DB", "x"),
        ("REDIS_URL", "http://nope"),
        ("PRESENCE_STORE", "mongo"),
        ("LOG_LEVEL", "loud"),
        ("WS_MAX_FRAME_BYTES", "-1"),
        ("WS_SEND_QUEUE_BYTES", "1MB"),
        ("WS_SEND_QUEUE_BYTES", "1024"),
        # No edge may let through more than a broker is promised (brokers.base).
        ("WS_MAX_FRAME_BYTES", "1047553"),
        ("HTTP_MAX_BODY_BYTES", "1047553"),
        ("HTTP_MAX_BODY_BYTES", "ten"),
        ("PRESENCE_MAX_META_BYTES", "1047553"),
        ("START_TIMEOUT_SECONDS", "0"),
        ("START_TIMEOUT_SECONDS", "inf"),
        ("START_TIMEOUT_SECONDS", "nan"),
        ("WS_PING_INTERVAL_SECONDS", "often"),
        ("LOG_FORMAT", "logfmt"),
        ("METRICS", "yes"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value}, env_file=None)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PRESENCE_TTL_SECONDS=30\nJWT_USER_CLAIM=uid\n")
    settings = load_settings({"JWT_USER_CLAIM": "account"}, env_file=env_file)
    assert settings.presence_ttl == 30
    assert settings.jwt_user_claim == "account"
    assert settings.get("PRESENCE_TTL_SECONDS") == "30"


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert load_settings({}, env_file=tmp_path / "absent").port == 8080


def test_cors_origins_are_split() -> None:
    settings = load_settings({"CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example"}, None)
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_ping_zero_disables_heartbeat() -> None:
    settings = load_settings({"WS_PING_INTERVAL_SECONDS": "0"}, env_file=None)
    assert settings.ws_ping_interval is None


# REDIS_CLUSTER_PUBSUB is refused without REDIS_CLUSTER=1, even at its default.
NEEDS = {"REDIS_CLUSTER_PUBSUB": {"REDIS_CLUSTER": "1"}}


@pytest.mark.parametrize(
    "option", [o for o in OPTIONS if o.default is not None], ids=lambda o: o.name
)
def test_an_unset_option_reads_as_its_documented_default(option: Option) -> None:
    # OPTIONS is the one place defaults are written: setting a variable to the default it
    # documents changes nothing.
    base = NEEDS.get(option.name, {})
    unset = load_settings(base, env_file=None)
    explicit = load_settings({**base, option.name: option.default or ""}, env_file=None)
    assert explicit.__dict__ | {"env": {}} == unset.__dict__ | {"env": {}}


def test_every_option_is_in_the_readme_settings_table() -> None:
    # README's Configuration section is where users look: a setting missing there is hidden.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [o.name for o in OPTIONS if f"`{o.name}`" not in section]
    assert missing == []
