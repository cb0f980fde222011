"""The session cookie: its name, and reading its token from a request's headers.

Shared by the HTTP API (which sets it) and the WebSocket handshake (which reads it).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

__all__ = ["MAX_TOKEN_LENGTH", "SESSION_COOKIE", "session_token"]

SESSION_COOKIE = "streamchat_session"
#: Our tokens are 43 characters; anything far longer is not one, so it is never looked up.
MAX_TOKEN_LENGTH = 128


def session_token(headers: Headers) -> str | None:
    """The session cookie's token, if it could be one."""
    for header in headers.getlist("cookie"):
        token = cookie_parser(header).get(SESSION_COOKIE)
        if token:
            return token if len(token) <= MAX_TOKEN_LENGTH else None
    return None
