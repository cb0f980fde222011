"""The one error tree of streamchat.

Every error a client can cause or see is a :class:`StreamchatError` carrying a
stable machine-readable ``code`` and the HTTP ``status`` it maps to; the
WebSocket layer sends the same code in an ``error`` frame::

    StreamchatError                 code                   HTTP
    ├── InvalidInput                invalid_input          422
    │   ├── MalformedFrame          malformed_json
    │   ├── UnknownType             unknown_type
    │   ├── InvalidFrame            invalid_frame
    │   ├── InvalidText             invalid_text
    │   │   └── BlockedTerm         blocked_term
    │   └── InvalidCommand          invalid_command
    ├── NotAuthenticated            not_authenticated      401
    │   └── LoginFailed             login_failed
    │       ├── LoginDenied         login_denied
    │       └── LoginExpired        login_expired
    ├── Forbidden                   forbidden              403
    │   ├── CrossSiteRequest        cross_site_request
    │   ├── DevLoginDisabled        dev_login_disabled
    │   ├── TwitchDisabled          twitch_disabled
    │   ├── AdminDisabled           admin_disabled
    │   ├── InvalidSignature        invalid_signature
    │   ├── Banned                  banned
    │   └── TimedOut                timed_out
    ├── NotFound                    not_found              404
    │   ├── UserNotFound            user_not_found
    │   ├── StreamerNotFound        streamer_not_found
    │   ├── UnknownRoom             unknown_room
    │   ├── UnknownMessage          unknown_message
    │   └── UnknownActor            unknown_actor
    ├── Conflict                    conflict               409
    │   ├── LoginTaken              login_taken
    │   └── Duplicate               duplicate
    ├── RateLimited                 rate_limited           429
    │   ├── TooManySubscriptions    too_many_subscriptions
    │   ├── TooManyAttempts         too_many_attempts
    │   ├── TooManyConnections      too_many_connections
    │   ├── TooManyRequests         too_many_requests
    │   └── SlowMode                slow_mode
    ├── PayloadTooLarge             payload_too_large      413
    ├── HistoryTrimmed              history_trimmed        410
    ├── Unavailable                 unavailable            503
    │   ├── MailboxFull             mailbox_full
    │   ├── ActorUnavailable        actor_unavailable
    │   ├── ActorCrashed            actor_crashed
    │   └── TwitchUnavailable       twitch_unavailable
    ├── TwitchRefused               twitch_refused         502
    └── ActorTimeout                actor_timeout          504

A process that cannot start raises :class:`CannotStart` (not a client's
error: the operator's, with a message naming what to fix).

:func:`error_from` rebuilds an error from its code, for errors that crossed a
process boundary (an actor's reply relayed through the broker).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ActorCrashed",
    "ActorTimeout",
    "ActorUnavailable",
    "AdminDisabled",
    "Banned",
    "BlockedTerm",
    "CannotStart",
    "Conflict",
    "CrossSiteRequest",
    "DevLoginDisabled",
    "Duplicate",
    "Forbidden",
    "HistoryTrimmed",
    "InvalidCommand",
    "InvalidFrame",
    "InvalidInput",
    "InvalidSignature",
    "InvalidText",
    "LoginDenied",
    "LoginExpired",
    "LoginFailed",
    "LoginTaken",
    "MailboxFull",
    "MalformedFrame",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "SlowMode",
    "StreamchatError",
    "StreamerNotFound",
    "TimedOut",
    "TooManyAttempts",
    "TooManyConnections",
    "TooManyRequests",
    "TooManySubscriptions",
    "TwitchDisabled",
    "TwitchRefused",
    "TwitchUnavailable",
    "Unavailable",
    "UnknownActor",
    "UnknownMessage",
    "UnknownRoom",
    "UnknownType",
    "UserNotFound",
    "error_from",
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


class LoginFailed(NotAuthenticated):
    """Logging in with Twitch did not work out; no session was started."""

    code = "login_failed"


class LoginDenied(LoginFailed):
    """The viewer declined on Twitch's consent page."""

    code = "login_denied"


class LoginExpired(LoginFailed):
    """The login's state is missing, wrong or too old, or Twitch refused its code (used
    or expired): start again."""

    code = "login_expired"


class Forbidden(StreamchatError):
    code = "forbidden"
    status = 403


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"


class DevLoginDisabled(Forbidden):
    """Logging in by bare Twitch ID outside ``dev`` auth mode."""

    code = "dev_login_disabled"


class AdminDisabled(Forbidden):
    """An admin request while ``STREAMCHAT_ADMIN_TOKEN`` is unset."""

    code = "admin_disabled"


class TwitchDisabled(Forbidden):
    """What was asked needs Twitch, which this server is not set up for (the ``twitch``
    auth mode, or the application's credentials)."""

    code = "twitch_disabled"


class InvalidSignature(Forbidden):
    """An EventSub webhook whose signature or timestamp does not hold."""

    code = "invalid_signature"


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


class InvalidCommand(InvalidInput):
    """An actor command that the actor does not know, or with arguments of the wrong shape."""

    code = "invalid_command"


class UnknownActor(NotFound):
    code = "unknown_actor"


class MailboxFull(Unavailable):
    """The actor's mailbox is full: the sender should retry later."""

    code = "mailbox_full"


class ActorUnavailable(Unavailable):
    """No process runs the actor right now (stopping, or no leader elected yet)."""

    code = "actor_unavailable"


class ActorCrashed(Unavailable):
    """The actor crashed while handling the command; it is being restarted."""

    code = "actor_crashed"


class TwitchUnavailable(Unavailable):
    """Twitch did not answer in time, answered with a server error, or kept rate-limiting."""

    code = "twitch_unavailable"


class TwitchRefused(StreamchatError):
    """Twitch refused a request of ours (a 4xx other than 401 and 429); ``details`` holds
    Twitch's own status."""

    code = "twitch_refused"
    status = 502

    def __init__(self, twitch_status: int, message: str) -> None:
        super().__init__(
            f"Twitch answered {twitch_status}: {message}", details={"twitch_status": twitch_status}
        )
        self.twitch_status = twitch_status


class ActorTimeout(StreamchatError):
    code = "actor_timeout"
    status = 504


def _subclasses(cls: type[StreamchatError]) -> list[type[StreamchatError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def error_from(code: str, message: str, *, details: Any = None) -> StreamchatError:
    """The error of this ``code``; :class:`Unavailable` for a code this version does not know."""
    for cls in _subclasses(StreamchatError):
        if cls.code == code:
            return cls(message, details=details)
    return Unavailable(message, details=details)


class HistoryTrimmed(StreamchatError):
    """Messages a replay was about to deliver were pruned meanwhile (retention)."""

    code = "history_trimmed"
    status = 410


class TooManyAttempts(RateLimited):
    """Too many logins, or wrong admin tokens, from one address or for one account."""

    code = "too_many_attempts"


class TooManyConnections(RateLimited):
    code = "too_many_connections"


class TooManyRequests(RateLimited):
    """A WebSocket client sent requests faster than allowed, or too many in one frame."""

    code = "too_many_requests"


class PayloadTooLarge(StreamchatError):
    code = "payload_too_large"
    status = 413


# -- moderation -------------------------------------------------------------------------


class Banned(Forbidden):
    """The user is banned from the room."""

    code = "banned"


class TimedOut(Forbidden):
    """The user is timed out in the room; ``details.retry_after`` says for how long."""

    code = "timed_out"


class SlowMode(RateLimited):
    """Slow mode: the user's previous message was too recent (``details.retry_after``)."""

    code = "slow_mode"


class Duplicate(Conflict):
    """Unique mode: the same text as the user's previous message, within 30 s."""

    code = "duplicate"


class BlockedTerm(InvalidText):
    """The text holds a term the room blocks."""

    code = "blocked_term"


class UnknownMessage(NotFound):
    """No message with that seq in the room (never sent, or pruned)."""

    code = "unknown_message"


class CannotStart(Exception):
    """A process cannot start: something it needs is missing or unreachable."""
