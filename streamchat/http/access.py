"""Every API request: a request id, and one log line as it starts.

The id is the client's ``X-Request-ID`` if it is sane, or a new one; it is
echoed in the response's ``X-Request-ID``. The line names the method, the
path, the user (resolved here from the session cookie, once: the route's own
user dependency reuses it) and the request id.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamchat.logs import ACCESS, log_http

__all__ = [
    "HEADER",
    "SESSION_COOKIE",
    "UNRESOLVED",
    "AccessMiddleware",
    "new_request_id",
    "request_id_of",
    "resolved_user",
    "session_token",
]

HEADER = "x-request-id"
SESSION_COOKIE = "streamchat_session"
#: Our tokens are 43 characters; anything far longer is not one, so it is never looked up.
MAX_TOKEN_LENGTH = 128

# Ids travel into logs: printable, short, no spaces or quotes.
_SANE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# The paths of the API: every one logs a line (probes, metrics and pages do not).
_LOGGED = ("/api/", "/auth/")
#: What :func:`resolved_user` returns when the middleware did not look the user up.
UNRESOLVED: Any = object()

log = logging.getLogger("streamchat.http")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(headers: Headers) -> str:
    """The client's request id when it is one we can log safely, else a new one."""
    given = headers.get(HEADER)
    if given is not None and _SANE.fullmatch(given):
        return given
    return new_request_id()


def session_token(headers: Headers) -> str | None:
    """The session cookie's token, if it could be one."""
    for header in headers.getlist("cookie"):
        token = cookie_parser(header).get(SESSION_COOKIE)
        if token:
            return token if len(token) <= MAX_TOKEN_LENGTH else None
    return None


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_of(headers)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        path: str = scope["path"]
        if path.startswith(_LOGGED) and ACCESS.isEnabledFor(logging.INFO):
            user_id = None
            if (token := session_token(headers)) is not None:
                try:
                    user = await scope["app"].state.services.sessions.resolve(token)
                except Exception as exc:
                    # The route meets the same failure and answers for it.
                    log.debug("resolving the session for the request log failed: %s", exc)
                else:
                    state["user"] = user
                    user_id = user.twitch_id if user is not None else None
            log_http(scope["method"], path, user_id, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def resolved_user(connection: HTTPConnection) -> Any:
    """The user the middleware found for this request's cookie, or a marker that it did not."""
    return connection.scope.get("state", {}).get("user", UNRESOLVED)
