"""Small real HTTP servers on 127.0.0.1 for the security tests: a JWKS endpoint and an
authorization hook, each in a thread, each counting what it was asked."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Server:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.url = ""

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.answer(self, b"")

            def do_POST(self) -> None:
                owner.answer(self, self.rfile.read(int(self.headers["content-length"] or 0)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class Keys:
    """An asymmetric signing key with its kid: signs tokens, shows its public half."""

    def __init__(self, kind: str, kid: str) -> None:
        self.kid = kid
        self.private: Any
        if kind == "rsa":
            self.private, self.algorithm = rsa.generate_private_key(65537, 2048), "RS256"
        elif kind == "ec":
            self.private, self.algorithm = ec.generate_private_key(ec.SECP256R1()), "ES256"
        else:
            self.private, self.algorithm = ed25519.Ed25519PrivateKey.generate(), "EdDSA"

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def token(self, claims: dict[str, Any], kid: str | None = "") -> str:
        headers = {"kid": self.kid if kid == "" else kid} if kid is not None else None
        full = {"exp": int(time.time()) + 60, **claims}
        return jwt.encode(full, self.private, algorithm=self.algorithm, headers=headers)


class JwksServer(Server):
    """Serves ``keys`` as a JWKS; tests swap the list to rotate."""

    def __init__(self, *keys: Keys) -> None:
        super().__init__()
        self.keys = list(keys)
        self.body: bytes | None = None  # set: served instead of the keys

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.calls.append(time.monotonic())
        data = json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()
        reply(handler, 200, data if self.body is None else self.body)


class HookServer(Server):
    """An app backend's authorization endpoint: ``decide(request) -> allow`` (None: answer 500),
    after ``delay`` seconds."""

    def __init__(self, decide: Callable[[dict[str, Any]], bool | None]) -> None:
        super().__init__()
        self.decide = decide
        self.delay = 0.0

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        request = json.loads(body)
        self.calls.append(request)
        if self.delay:
            time.sleep(self.delay)
        allow = self.decide(request)
        if allow is None:
            reply(handler, 500, b'{"oops": 1}')
        else:
            reply(handler, 200, json.dumps({"allow": allow}).encode())
