"""The one error tree of streamchat.

Every error a client can cause or see is a :class:`StreamchatError` carrying a
stable machine-readable ``code`` and the HTTP ``status`` it maps to; the
WebSocket layer sends the same code in an ``error`` frame::

    StreamchatError                 code                   HTTP
    ├── InvalidInput                invalid_input          422
    │   ├── MalformedFrame          malformed_json
    │   ├── UnknownType             unknown_type
    │   ├── InvalidFrame            invalid_frame
    │   └── InvalidText             invalid_text
    ├── NotAuthenticated            not_authenticated      401
    ├── Forbidden                   forbidden              403
    │   └── CrossSiteRequest        cross_site_request
    ├── NotFound                    not_found              404
    │   ├── UserNotFound            user_not_found
    │   ├── StreamerNotFound        streamer_not_found
    │   └── UnknownRoom             unknown_room
    ├── Conflict                    conflict               409
    │   └── LoginTaken              login_taken
    ├── RateLimited                 rate_limited           429
    │   └── TooManySubscriptions    too_many_subscriptions
    └── Unavailable                 unavailable            503
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "CrossSiteRequest",
    "Forbidden",
    "InvalidFrame",
    "InvalidInput",
    "InvalidText",
    "LoginTaken",
    "MalformedFrame",
    "NotAuthenticated",
    "NotFound",
    "RateLimited",
    "StreamchatError",
    "StreamerNotFound",
    "TooManySubscriptions",
    "Unavailable",
    "UnknownRoom",
    "UnknownType",
    "UserNotFound",
]


class StreamchatError(Exception):
    """Base of every error reported to a client."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(StreamchatError):
    code = "invalid_input"
    status = 422


class MalformedFrame(InvalidInput):
    """A WebSocket frame line that is not JSON."""

    code = "malformed_json"


class UnknownType(InvalidInput):
    code = "unknown_type"


class InvalidFrame(InvalidInput):
    """A frame missing a field, or with a field of the wrong shape."""

    code = "invalid_frame"


class InvalidText(InvalidInput):
    code = "invalid_text"


class NotAuthenticated(StreamchatError):
    code = "not_authenticated"
    status = 401


class Forbidden(StreamchatError):
    code = "forbidden"
    status = 403


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"


class NotFound(StreamchatError):
    code = "not_found"
    status = 404


class UserNotFound(NotFound):
    code = "user_not_found"


class StreamerNotFound(NotFound):
    code = "streamer_not_found"


class UnknownRoom(NotFound):
    code = "unknown_room"


class Conflict(StreamchatError):
    code = "conflict"
    status = 409


class LoginTaken(Conflict):
    code = "login_taken"


class RateLimited(StreamchatError):
    code = "rate_limited"
    status = 429


class Unavailable(StreamchatError):
    code = "unavailable"
    status = 503


class TooManySubscriptions(RateLimited):
    code = "too_many_subscriptions"
