"""The web client: ``GET /`` serves the chat page, ``/static/`` its scripts and styles.

The page is plain HTML, CSS and JavaScript modules shipped inside the package
(``streamchat/web/``): nothing to build. It talks to this server only, and the
Content-Security-Policy says so, so a message that slipped through as markup
still could not run a script or load anything from elsewhere.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from streamchat import __version__
from streamchat.config import AuthMode
from streamchat.http.deps import ServicesDep
from streamchat.protocol import MAX_TEXT_LENGTH

__all__ = ["SECURITY_HEADERS", "STATIC_PATH", "WEB_ROOT", "router", "static_files"]

WEB_ROOT = Path(str(files("streamchat") / "web"))
STATIC_PATH = "/static"

#: The page loads its own scripts, styles and images and connects to its own
#: origin (``'self'`` covers ws:// and wss:// of the same host), nothing else.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Revalidated on every load (ETag): an upgraded server never runs yesterday's script.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web"])


class ServerOut(BaseModel):
    """What a client needs to know about this server before it shows anything."""

    version: str
    auth_mode: AuthMode = Field(
        description="`dev`: log in by Twitch ID (`POST /api/login`); "
        "`twitch`: log in with Twitch (`/auth/twitch/login`)."
    )
    max_text_length: int = Field(description="The longest chat message, in characters.")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The chat page."""
    return FileResponse(WEB_ROOT / "index.html", headers=SECURITY_HEADERS)


@router.get("/api/server", response_model=ServerOut, tags=["server"])
async def server(services: ServicesDep) -> ServerOut:
    """This server's version, how to log in, and the chat's limits."""
    return ServerOut(
        version=__version__,
        auth_mode=services.settings.auth_mode,
        max_text_length=MAX_TEXT_LENGTH,
    )


class _Static(StaticFiles):
    """The page's files, with the page's headers."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def static_files() -> StaticFiles:
    return _Static(directory=WEB_ROOT / "static")
