"""Streamer information: identity, live status, title, game and audience."""

from __future__ import annotations

from fastapi import APIRouter

from streamchat.errors import InvalidInput, StreamerNotFound, Unavailable
from streamchat.http.deps import OptionalUser, ServicesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import StreamerOut, StreamerRef

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["streamers"], responses=error_responses(Unavailable))


@router.get("/streamers", response_model=list[StreamerOut])
async def list_streamers(services: ServicesDep, user: OptionalUser) -> list[StreamerOut]:
    """Every streamer, live ones first; the caller's favourite is marked."""
    favorite_id = user.favorite_streamer_id if user else None
    return [StreamerOut.of(s, favorite_id=favorite_id) for s in await services.streamers.all()]


@router.get(
    "/streamers/{ref}",
    response_model=StreamerOut,
    responses=error_responses(StreamerNotFound, InvalidInput),
)
async def get_streamer(ref: StreamerRef, services: ServicesDep, user: OptionalUser) -> StreamerOut:
    """One streamer by login or Twitch ID."""
    streamer = await services.streamers.find(ref)
    if streamer is None:
        raise StreamerNotFound(f"no streamer {ref!r}")
    return StreamerOut.of(streamer, favorite_id=user.favorite_streamer_id if user else None)
