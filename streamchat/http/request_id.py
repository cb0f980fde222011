"""Every HTTP request gets a request id: the client's ``X-Request-ID`` if it is sane, or a new one.

The id is echoed in the response's ``X-Request-ID`` and kept in the request's
state, where the request log line and handlers find it.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "RequestIdMiddleware", "new_request_id", "request_id", "request_id_of"]

HEADER = "x-request-id"

# Ids travel into logs: printable, short, no spaces or quotes.
_SANE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(headers: Headers) -> str:
    """The client's request id when it is one we can log safely, else a new one."""
    given = headers.get(HEADER)
    if given is not None and _SANE.fullmatch(given):
        return given
    return new_request_id()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id(connection: HTTPConnection) -> str:
    """The id of this request (made up if it did not go through the middleware)."""
    state = connection.scope.setdefault("state", {})
    value = state.get("request_id")
    if not isinstance(value, str):
        value = state["request_id"] = new_request_id()
    return value
