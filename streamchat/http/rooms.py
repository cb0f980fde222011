"""Rooms over HTTP: their history, their state, and their moderation."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from streamchat import actions
from streamchat.actions.moderation import OPERATOR, Role, role_in
from streamchat.errors import (
    CrossSiteRequest,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    PayloadTooLarge,
    Unavailable,
    UnknownMessage,
    UnknownRoom,
    UserNotFound,
)
from streamchat.http.admin import ADMIN_ERRORS, require_admin
from streamchat.http.deps import OptionalUser, ServicesDep, ThrottlesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import RoomName, RoomPageOut
from streamchat.http.throttle import Throttles
from streamchat.protocol import MAX_TIMEOUT, Moderate, ModerationAction, UserRef, encode
from streamchat.services import Services
from streamchat.store.models import User

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["rooms"])


class _Page(msgspec.Struct):
    room: str
    messages: list[msgspec.Raw]


@router.get(
    "/rooms/{room}/messages",
    response_class=Response,
    responses={
        200: {"model": RoomPageOut, "description": "The messages."},
        **error_responses(UnknownRoom, InvalidInput, Unavailable),
    },
)
async def room_messages(
    room: RoomName,
    services: ServicesDep,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Response:
    """Messages of a room, oldest first: the newest ones, those ``before`` a seq, or those
    ``after`` one (at most 100)."""
    if before is not None and after is not None:
        raise InvalidInput("give before or after, not both")
    if after is not None:
        frames = await services.rooms.read(room, after=after, limit=limit)
    else:
        frames = await services.rooms.history(room, before=before, limit=limit)
    body = encode(_Page(room, [msgspec.Raw(frame) for frame in frames]))
    return Response(body, media_type="application/json")


# -- a room's state and its moderation ------------------------------------------------


async def _caller(
    request: Request,
    services: Services,
    throttles: Throttles,
    user: User | None,
    authorization: str | None,
) -> UserRef | None:
    """Who calls: an operator (the admin token), a logged-in user, or nobody (None)."""
    if authorization is not None:
        await require_admin(request, services, throttles, authorization)
        return OPERATOR
    if user is None:
        return None
    return UserRef(user.twitch_id, user.login, user.display_name)


class ModesOut(BaseModel):
    slow: int = Field(description="Slow mode: seconds between a viewer's messages; 0 is off.")
    unique: bool = Field(description="Unique mode: a viewer cannot repeat their last message.")
    blocked_terms: int = Field(description="How many terms the room blocks.")


class RoomOut(BaseModel):
    room: str
    streamer_id: str
    modes: ModesOut
    role: Role | None = Field(
        description="The caller's role: `operator`, `broadcaster`, `moderator`, `viewer`, "
        "or null without a session."
    )
    #: For the broadcaster, moderators and operators only.
    blocked_terms: list[str] | None = None
    moderators: list[str] | None = Field(
        default=None, description="Moderators' user IDs (for the room's staff only)."
    )


_STAFF = ("operator", "broadcaster", "moderator")


@router.get(
    "/rooms/{room}",
    response_model=RoomOut,
    responses=error_responses(UnknownRoom, *ADMIN_ERRORS, InvalidInput, Unavailable),
)
async def room_state(
    room: RoomName,
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    user: OptionalUser,
    authorization: Annotated[str | None, Header()] = None,
) -> RoomOut:
    """A room's chat modes and the caller's role in it."""
    caller = await _caller(request, services, throttles, user, authorization)
    streamer_id = await services.rooms.resolve(room)
    rules = await services.rooms.rules.get(streamer_id)
    role = role_in(rules, streamer_id, caller)
    staff = role in _STAFF
    return RoomOut(
        room=room,
        streamer_id=streamer_id,
        modes=ModesOut(**rules.modes()),
        role=role,
        blocked_terms=list(rules.blocked_terms) if staff else None,
        moderators=sorted(rules.moderators) if staff else None,
    )


#: Blocked terms added or removed at once.
Terms = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=100)]], Field(max_length=100)
]


class ModerationIn(BaseModel):
    # Strict: "enabled": 0 or "seconds": "10" are mistakes, not values to guess at.
    model_config = ConfigDict(extra="forbid", strict=True)

    action: ModerationAction
    user: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,25}$")] | None = None
    seconds: Annotated[int, Field(ge=0, le=MAX_TIMEOUT)] | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    seq: Annotated[int, Field(ge=1, le=2**62)] | None = None
    enabled: bool | None = None
    add: Terms | None = None
    remove: Terms | None = None


class ModeratedOut(BaseModel):
    room: str
    action: str
    deleted: list[int] | None = Field(default=None, description="Seqs of the messages deleted.")
    through: int | None = Field(
        default=None, description="`clear`: every message up to this seq is deleted."
    )


_MODERATION_ERRORS = (
    UnknownRoom,
    UnknownMessage,
    UserNotFound,
    NotAuthenticated,
    Forbidden,
    *ADMIN_ERRORS,
    InvalidInput,
    CrossSiteRequest,
    PayloadTooLarge,
    Unavailable,
)


@router.post(
    "/rooms/{room}/moderation",
    response_model=ModeratedOut,
    responses=error_responses(*_MODERATION_ERRORS),
)
async def moderate(
    room: RoomName,
    body: ModerationIn,
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    user: OptionalUser,
    authorization: Annotated[str | None, Header()] = None,
) -> ModeratedOut:
    """Take a moderation action (docs/protocol.md, "moderate"): as the broadcaster or a
    moderator (session cookie), or as an operator (``Authorization: Bearer <admin token>``)."""
    caller = await _caller(request, services, throttles, user, authorization)
    done = await actions.moderate(services, caller, room, Moderate(room=room, **body.model_dump()))
    return ModeratedOut(room=room, action=body.action, **done)


class ModerationEntryOut(BaseModel):
    id: int
    action: str
    by: str = Field(description="Who acted: a user ID, or `operator`.")
    user: str | None = Field(description="The user acted on, by ID.")
    seq: int | None
    seconds: int | None
    reason: str
    details: dict[str, Any]
    at: datetime


class ModerationLogOut(BaseModel):
    room: str
    entries: list[ModerationEntryOut] = Field(description="Newest first.")


@router.get(
    "/rooms/{room}/moderation/log",
    response_model=ModerationLogOut,
    responses=error_responses(
        UnknownRoom, NotAuthenticated, Forbidden, *ADMIN_ERRORS, InvalidInput, Unavailable
    ),
)
async def moderation_log(
    room: RoomName,
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    user: OptionalUser,
    authorization: Annotated[str | None, Header()] = None,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ModerationLogOut:
    """The room's moderation actions, newest first (``before`` an entry's id to page back):
    for its broadcaster, moderators and operators."""
    caller = await _caller(request, services, throttles, user, authorization)
    if caller is None:
        raise NotAuthenticated("log in to read the moderation log")
    streamer_id = await services.rooms.resolve(room)
    rules = await services.rooms.rules.get(streamer_id)
    if role_in(rules, streamer_id, caller) not in _STAFF:
        raise Forbidden("only the broadcaster and moderators may read the moderation log")
    entries = await services.moderation.log(streamer_id, before=before, limit=limit)
    return ModerationLogOut(
        room=room,
        entries=[
            ModerationEntryOut(
                id=e.id,
                action=e.action,
                by=e.actor_id,
                user=e.target_id,
                seq=e.seq,
                seconds=e.seconds,
                reason=e.reason,
                details=json.loads(e.details or "{}"),
                at=e.created_at,
            )
            for e in entries
        ],
    )
