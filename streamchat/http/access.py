"""Every API request: a request id, and one log line as it starts.

The id is the client's ``X-Request-ID`` if it is sane, or a new one; it is
echoed in the response's ``X-Request-ID``. The line names the method, the
path, the user (resolved here from the session cookie, once: the route's own
user dependency reuses it) and the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamchat.cookies import session_token
from streamchat.logs import ACCESS, REQUEST_ID_HEADER, log_http, request_id_of

__all__ = ["UNRESOLVED", "AccessMiddleware", "resolved_user"]

# The paths of the API: every one logs a line (probes, metrics and pages do not).
_LOGGED = ("/api/", "/auth/")
#: What :func:`resolved_user` returns when the middleware did not look the user up.
UNRESOLVED: Any = object()

log = logging.getLogger("streamchat.http")


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
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def resolved_user(connection: HTTPConnection) -> Any:
    """The user the middleware found for this request's cookie, or a marker that it did not."""
    return connection.scope.get("state", {}).get("user", UNRESOLVED)
