"""The room protocol: every frame a client and a server exchange, as typed structs.

A WebSocket text frame carries one or more JSON objects separated by ``\\n``.
Client requests are decoded once, at the edge, by :func:`decode_requests`;
server frames are encoded by :func:`encode`. Chat messages are the one
exception to "build a struct, then encode": a message is encoded once when it
is published, stored as bytes, and :func:`message_frame` splices the room and
sequence number into those bytes, so fan-out never re-encodes it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

from streamchat.errors import InvalidFrame, MalformedFrame, StreamchatError, UnknownType

__all__ = [
    "MAX_HISTORY",
    "MAX_TEXT_LENGTH",
    "MAX_TIMEOUT",
    "Ack",
    "ChatMessage",
    "ErrorFrame",
    "EventFrame",
    "History",
    "HistoryReply",
    "Join",
    "Leave",
    "Moderate",
    "Moderated",
    "ModerationNotice",
    "Ping",
    "Pong",
    "Presence",
    "PresenceChange",
    "PresenceReply",
    "Publish",
    "Request",
    "RequestError",
    "RoomState",
    "StreamerChange",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "Unwatch",
    "Unwatched",
    "UserRef",
    "Watch",
    "Watching",
    "decode_requests",
    "encode",
    "error_frame",
    "message_frame",
]

MAX_TEXT_LENGTH: Final = 500
MAX_HISTORY: Final = 100

RequestId = int | str | None
#: Seqs are 64-bit in every store; anything larger cannot name a message.
MAX_SEQ: Final = 2**62
Seq = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
Room = Annotated[str, Meta(min_length=1, max_length=64)]
Nonce = Annotated[str, Meta(min_length=1, max_length=64)]
# Long enough for any valid message, short enough that junk is refused before
# it reaches the text checks (the text itself is checked by the room service).
Text = Annotated[str, Meta(max_length=4 * MAX_TEXT_LENGTH)]


class UserRef(Struct, frozen=True):
    """Who wrote a message, or joined or left a room."""

    id: str
    login: str | None
    display_name: str | None


# -- client -> server -----------------------------------------------------------------


class _Request(Struct, tag_field="type", kw_only=True, frozen=True):
    id: RequestId = None


class Subscribe(_Request, tag="subscribe", frozen=True):
    room: Room
    since: Seq | None = None
    #: The epoch returned by an earlier ``subscribed``: history from another epoch
    #: cannot be continued (the store lost it), so recovery reports ``false``.
    epoch: str | None = None


class Unsubscribe(_Request, tag="unsubscribe", frozen=True):
    room: Room


class Publish(_Request, tag="publish", frozen=True):
    room: Room
    text: Text
    nonce: Nonce | None = None


class History(_Request, tag="history", frozen=True):
    room: Room
    before: Seq | None = None
    #: Clamped to MAX_HISTORY; the bound only keeps absurd numbers out.
    limit: Annotated[int, Meta(ge=1, le=2**31)] = 50


class Presence(_Request, tag="presence", frozen=True):
    room: Room


class Ping(_Request, tag="ping", frozen=True):
    pass


#: The feeds a connection may watch besides rooms: the streamer directory.
Feed = Literal["streamers"]


class Watch(_Request, tag="watch", frozen=True):
    feed: Feed


class Unwatch(_Request, tag="unwatch", frozen=True):
    feed: Feed


#: The moderation actions (docs/protocol.md, "moderate").
ModerationAction = Literal[
    "ban",
    "unban",
    "timeout",
    "untimeout",
    "delete",
    "clear",
    "mod",
    "unmod",
    "slow",
    "unique",
    "terms",
]
Login = Annotated[str, Meta(min_length=1, max_length=25, pattern=r"^[A-Za-z0-9_]+$")]
Term = Annotated[str, Meta(min_length=1, max_length=100)]
#: A timeout's longest, as on Twitch: two weeks.
MAX_TIMEOUT: Final = 1_209_600


class Moderate(_Request, tag="moderate", frozen=True):
    room: Room
    action: ModerationAction
    user: Login | None = None
    seconds: Annotated[int, Meta(ge=0, le=MAX_TIMEOUT)] | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None
    seq: Seq | None = None
    enabled: bool | None = None
    add: Annotated[list[Term], Meta(max_length=100)] | None = None
    remove: Annotated[list[Term], Meta(max_length=100)] | None = None


Request = Subscribe | Unsubscribe | Publish | History | Presence | Ping | Watch | Unwatch | Moderate

_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "subscribe": ("room",),
    "unsubscribe": ("room",),
    "publish": ("room", "text"),
    "history": ("room",),
    "presence": ("room",),
    "ping": (),
    "watch": ("feed",),
    "unwatch": ("feed",),
    "moderate": ("room", "action"),
}

_request_decoder = msgspec.json.Decoder(Request)
_TOO_DEEP = "not valid JSON: nested too deeply"
_any_decoder = msgspec.json.Decoder()


class RequestError(Struct, frozen=True):
    """A request line that could not be decoded, with the ``id`` it carried if any."""

    id: RequestId
    error: StreamchatError


def _request_id(raw: dict[str, Any]) -> RequestId:
    value = raw.get("id")
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _classify(line: bytes, exc: msgspec.ValidationError) -> RequestError:
    """Turn a failed decode into the precise error the client should see."""
    try:
        raw = _any_decoder.decode(line)
    except msgspec.DecodeError:
        return RequestError(None, MalformedFrame("not valid JSON"))
    except RecursionError:
        return RequestError(None, MalformedFrame(_TOO_DEEP))
    if not isinstance(raw, dict):
        return RequestError(None, InvalidFrame("each line must be a JSON object"))
    request_id = _request_id(raw)
    kind = raw.get("type")
    if kind is None:
        return RequestError(request_id, InvalidFrame("missing field 'type'"))
    if not isinstance(kind, str) or kind not in _REQUIRED:
        return RequestError(request_id, UnknownType(f"unknown type {kind!r}"))
    missing = [name for name in _REQUIRED[kind] if name not in raw]
    if missing:
        return RequestError(request_id, InvalidFrame(f"missing field {missing[0]!r}"))
    return RequestError(request_id, InvalidFrame(str(exc)))


def decode_requests(data: str | bytes) -> list[Request | RequestError]:
    """Decode every ``\\n``-separated object of one frame, in order."""
    if isinstance(data, str):
        data = data.encode()
    out: list[Request | RequestError] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            request = _request_decoder.decode(line)
        except msgspec.ValidationError as exc:
            out.append(_classify(line, exc))
        except msgspec.DecodeError:
            out.append(RequestError(None, MalformedFrame("not valid JSON")))
        except RecursionError:
            # msgspec gives up on deep nesting; no request nests more than two levels.
            out.append(RequestError(None, MalformedFrame(_TOO_DEEP)))
        else:
            out.append(request)
    return out


# -- server -> client -----------------------------------------------------------------


class _Reply(Struct, tag_field="type", kw_only=True, omit_defaults=True, frozen=True):
    id: RequestId = None


class Subscribed(_Reply, tag="subscribed", frozen=True):
    room: str
    seq: int
    epoch: str
    recovered: bool
    #: When history was pruned past ``since``: the oldest seq still kept.
    oldest: int | None = None
    #: The room's chat modes (see ``RoomState``).
    room_state: dict[str, Any] | None = None


class Unsubscribed(_Reply, tag="unsubscribed", frozen=True):
    room: str


class Ack(_Reply, tag="ack", frozen=True):
    room: str
    seq: int
    message_id: str


class HistoryReply(_Reply, tag="history", frozen=True):
    room: str
    #: Already-encoded ``message`` objects, oldest first.
    messages: list[msgspec.Raw]


class PresenceReply(_Reply, tag="presence", frozen=True):
    room: str
    count: int
    users: list[UserRef]


class Pong(_Reply, tag="pong", frozen=True):
    pass


class ErrorFrame(_Reply, tag="error", frozen=True):
    code: str
    reason: str
    #: Machine-readable particulars, e.g. ``{"retry_after": 1.5}``.
    details: Any = None


class Moderated(_Reply, tag="moderated", frozen=True):
    """A moderation action was taken (and announced to the room)."""

    room: str
    action: str
    #: The messages it deleted, when it deleted some (``delete``, ``ban``, ``timeout``).
    deleted: list[int] | None = None
    #: With ``clear``: every message up to this seq is deleted.
    through: int | None = None


class ModerationNotice(Struct, tag="moderation", tag_field="type", omit_defaults=True, frozen=True):
    """A moderation action, to everyone in the room (``by`` took it)."""

    room: str
    action: str
    by: UserRef
    user: UserRef | None = None
    seq: int | None = None
    seconds: int | None = None
    #: ``clear``: every message up to this seq is gone.
    through: int | None = None


class RoomState(Struct, tag="room_state", tag_field="type", frozen=True):
    """A room's chat modes, after one changed."""

    room: str
    slow: int
    unique: bool
    blocked_terms: int


class Watching(_Reply, tag="watching", frozen=True):
    feed: str


class Unwatched(_Reply, tag="unwatched", frozen=True):
    feed: str


class PresenceChange(Struct, tag_field="type", frozen=True):
    """``join`` or ``leave``: a logged-in user's first subscription or last one ended."""

    room: str
    user: UserRef


class Join(PresenceChange, tag="join", frozen=True):
    pass


class Leave(PresenceChange, tag="leave", frozen=True):
    pass


class EventFrame(Struct, tag="event", tag_field="type", frozen=True):
    """Something happened to a room: the stream went live, a system broadcast..."""

    room: str
    kind: str
    data: dict[str, Any]


class StreamerChange(Struct, tag="streamer", tag_field="type", frozen=True):
    """A change in the streamer directory, to the connections watching ``streamers``.

    ``kind`` is ``stream.online``, ``stream.offline`` or ``stream.update`` (``data``
    is the streamer's info, as in the room's ``event``), ``streamer.added`` (the
    same) or ``streamer.removed`` (``data`` holds ``id`` and ``login``).
    """

    kind: str
    data: dict[str, Any]


class ChatMessage(Struct, frozen=True):
    """The stored body of a chat message: everything but its room and sequence number."""

    message_id: str
    user: UserRef
    text: str
    ts: int


_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def error_frame(request_id: RequestId, error: StreamchatError) -> bytes:
    return encode(
        ErrorFrame(id=request_id, code=error.code, reason=error.message, details=error.details)
    )


def message_frame(room: str, seq: int, body: bytes) -> bytes:
    """The ``message`` object for a stored :class:`ChatMessage` body, without re-encoding it.

    ``body`` is ``{"message_id":…}``; the result is
    ``{"type":"message","room":…,"seq":N,"message_id":…}``. A deleted message (an empty,
    redacted body) is its tombstone: ``{"type":"message","room":…,"seq":N,"deleted":true}``.
    """
    if not body:
        return b'{"type":"message","room":%b,"seq":%d,"deleted":true}' % (encode(room), seq)
    return b'{"type":"message","room":%b,"seq":%d,%b' % (encode(room), seq, body[1:])
