"""The playground: a static page (``realtime/static/playground/``) that connects to a gateway
with ``realtime.js`` and shows what it does. ``/`` sends the browser to ``/playground/``, where
the page and its assets sit side by side, so the same directory also works served by any other
static server (the page then talks to the gateway named in its URL field, cross-origin)."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from realtime.config import Settings
from realtime.config import playground_off_by as off_by

DIRECTORY = Path(__file__).resolve().parent.parent / "static" / "playground"

# The same words whatever turned it off: an anonymous caller learns nothing about the keys.
OFF = "the playground is off on this gateway: set PLAYGROUND=1 to serve it at /"


class PageFiles(StaticFiles):
    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        # Revalidate every time (a 304 by ETag): after an upgrade the page and its script
        # must not be a mix of two versions.
        response.headers["cache-control"] = "no-cache"
        response.headers["x-content-type-options"] = "nosniff"
        return response


async def to_page(request: Request) -> Response:
    # Relative, with the query (?gateway=...): right behind a proxy that adds a path prefix.
    query = request.url.query
    return RedirectResponse("playground/" + (f"?{query}" if query else ""), status_code=302)


async def off(request: Request) -> Response:
    return JSONResponse({"error": OFF}, status_code=404)


def playground_routes(settings: Settings) -> list[BaseRoute]:
    if not settings.playground:
        return [
            Route("/", off),
            Route("/playground", off),
            Route("/playground/{path:path}", off),
        ]
    return [
        Route("/", to_page),
        Mount("/playground", PageFiles(directory=DIRECTORY, html=True)),
    ]


def playground_notice(settings: Settings) -> str:
    """The start-up line: whether the playground is served, and why."""
    given = settings.get("PLAYGROUND")
    if settings.playground:
        why = "PLAYGROUND=1" if given else "no JWT key or API_KEYS set; PLAYGROUND=0 turns it off"
        return f"the playground is served at / ({why})"
    if given:
        return "the playground is off (PLAYGROUND=0)"
    return f"the playground is off because {off_by(settings.env)} is set (PLAYGROUND=1 serves it)"
