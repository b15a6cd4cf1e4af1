"""Reading variables through ``OPTIONS``: the merged environment, and the parsers whose errors
name the variable and what it accepts."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.config import Config

from realtime.config.options import DEFAULTS
from realtime.errors import ConfigError

T = TypeVar("T")


class Env:
    """The merged environment, read through ``OPTIONS``: ``given`` is what the user set,
    ``value`` falls back to the option's default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def given(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def value(self, name: str) -> str:
        value = self.given(name) or DEFAULTS[name]
        assert value is not None, f"{name} has no default in OPTIONS"
        return value


def merged_env(environ: Mapping[str, str], env_file: str | Path | None) -> dict[str, str]:
    # Starlette's Config reads the .env file; the process environment wins over it.
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update(Config(env_file, environ={}).file_values)
    merged.update(environ)
    return merged


def parse(
    env: Env,
    name: str,
    cast: Callable[[str], T],
    accepts: str,
    minimum: float = 0,
    maximum: float = math.inf,
    default: str | None = None,
) -> T:
    """``default`` is for the rare option whose default follows another setting."""
    text = env.given(name) or default or env.value(name)
    try:
        value = cast(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not {accepts}") from None
    # `not minimum <= value` also refuses NaN.
    if not minimum <= value <= maximum:  # type: ignore[operator]
        raise ConfigError(name, f"{text!r} is not {accepts}")
    return value


def bounded(env: Env, name: str, low: int, high: int) -> int:
    value = parse(env, name, int, f"a whole number from {low} to {high}", low)
    if value > high:
        raise ConfigError(name, f"{value} is not a whole number from {low} to {high}")
    return value


def split_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {' | '.join(allowed)}")
    return value


def parse_addr(name: str, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(name, f"{value!r} is not host:port (for example :8080 or 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def flag(name: str, value: str) -> bool:
    text = value.lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"{value!r} is not 1 or 0")


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
