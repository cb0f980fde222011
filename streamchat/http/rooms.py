"""Room history over HTTP."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Query, Response

from streamchat.errors import InvalidInput, Unavailable, UnknownRoom
from streamchat.http.deps import ServicesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import RoomName, RoomPageOut
from streamchat.protocol import encode

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
