from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from realtime.testing.gateway import ws_client


async def refused(url: str, token: str | None = None, query: str = "") -> tuple[int, str]:
    """The status and JSON ``error`` of an upgrade the gateway refuses (fails if it accepts)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(url + query, additional_headers=headers):
            pass
    response = info.value.response
    error: str = json.loads(response.body)["error"]
    return response.status_code, error


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(claims: dict[str, Any], alg: str, key: bytes, kid: str | None = None) -> str:
    """A token signed by hand, for what PyJWT refuses to make: HS256 keyed with a PEM public
    key (the algorithm-confusion attack), or ``alg: none``."""
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b""
    if alg == "HS256":
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"
