"""The load-balancer recipe as the drill runs it: deploy/nginx/realtime.conf, rendered."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX_RECIPE = ROOT / "deploy" / "nginx" / "realtime.conf"
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(template: str, values: dict[str, str]) -> str:
    """``${NAME}`` replaced by ``values[NAME]``, as envsubst does with a list of names; a
    placeholder without a value is an error (envsubst would leave it for nginx to reject)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{NGINX_RECIPE.name}: no value for ${{{name}}}")
        return values[name]

    return _PLACEHOLDER.sub(one, template)


def nginx_site(listen_port: int, gateways: Sequence[str]) -> str:
    """The recipe for nginx on 127.0.0.1:``listen_port`` in front of ``gateways`` (host:port)."""
    values = {"REALTIME_LISTEN": f"127.0.0.1:{listen_port}"}
    values.update({f"REALTIME_GATEWAY_{i}": g for i, g in enumerate(gateways, 1)})
    return render(NGINX_RECIPE.read_text(), values)
