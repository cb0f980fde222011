"""Cross-site request protection for cookie-authenticated writes."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from streamchat.errors import CrossSiteRequest
from streamchat.http.errors import error_response
from streamchat.origins import is_trusted_origin

__all__ = ["OriginCheckMiddleware"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginCheckMiddleware:
    """Reject state-changing requests that a browser sent from a foreign page.

    Browsers attach ``Origin`` (or at least ``Referer``) to cross-site writes; it
    must be the server's own origin or one of ``allowed_origins``. A request
    with neither header is not from a browser page and cannot carry a victim's
    cookie by accident, so it passes (curl, the Python client).
    """

    def __init__(self, app: ASGIApp, *, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = {origin.lower().rstrip("/") for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None and (referer := headers.get("referer")) is not None:
            origin = _origin_of(referer) or "null"
        if origin is not None and not is_trusted_origin(
            origin,
            scheme=scope.get("scheme", "http"),
            host=headers.get("host"),
            allowed=self.allowed,
        ):
            error = CrossSiteRequest(f"requests from origin {origin!r} are not allowed")
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
