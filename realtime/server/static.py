"""``GET /client/realtime.js``: the browser client, a file of the package (realtime/static/).

Read once at start-up: it changes only with the installed package. Served with
``access-control-allow-origin: *`` whatever ``CORS_ALLOWED_ORIGINS`` says: a module script
loaded from another origin is fetched in CORS mode and refused without it, and the file is
public (the npm package ships the same bytes). A short ``max-age`` plus an ``ETag``: a page
revalidates within minutes of a gateway upgrade, and a revalidation costs a 304.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CLIENT_PATH = "/client/realtime.js"
CACHE_CONTROL = "public, max-age=300"


def client_source() -> bytes:
    return resources.files("realtime").joinpath("static/client/realtime.js").read_bytes()


def client_routes() -> list[Route]:
    body = client_source()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "cache-control": CACHE_CONTROL,
        "etag": etag,
        "access-control-allow-origin": "*",
        "x-content-type-options": "nosniff",
    }

    async def client_js(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)

    return [Route(CLIENT_PATH, client_js, methods=["GET", "HEAD"])]
