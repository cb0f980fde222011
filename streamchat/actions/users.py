"""Registering viewers and their favourite streamer."""

from __future__ import annotations

from streamchat.errors import StreamerNotFound
from streamchat.services import Services
from streamchat.store.models import Streamer, User

__all__ = ["clear_favorite", "register", "set_favorite"]


async def register(
    services: Services, twitch_id: str, *, login: str | None, display_name: str | None
) -> tuple[User, bool]:
    """Register a viewer by Twitch ID; return them and whether they are new (idempotent)."""
    return await services.users.register(twitch_id, login=login, display_name=display_name)


async def set_favorite(services: Services, user: User, streamer_ref: str) -> Streamer:
    """Make the streamer (by login or ID) ``user``'s favourite; return it."""
    streamer = await services.streamers.find(streamer_ref)
    if streamer is None:
        raise StreamerNotFound(f"no streamer {streamer_ref!r}")
    await services.users.set_favorite(user.twitch_id, streamer.id)
    user.favorite_streamer_id = streamer.id
    return streamer


async def clear_favorite(services: Services, user: User) -> None:
    await services.users.set_favorite(user.twitch_id, None)
    user.favorite_streamer_id = None
