"""Registering viewers and their favourite streamer."""

from __future__ import annotations

from streamchat.config import AuthMode
from streamchat.errors import StreamerNotFound, Unavailable, UserNotFound
from streamchat.services import Services
from streamchat.store.models import Streamer, User

__all__ = ["clear_favorite", "register", "set_favorite"]


async def register(
    services: Services, twitch_id: str, *, login: str | None, display_name: str | None
) -> tuple[User, bool]:
    """Register a viewer by Twitch ID; return them and whether they are new (idempotent).

    In the ``twitch`` auth mode the ID must be one Twitch knows (:class:`UserNotFound`
    otherwise), and the login and names are Twitch's, not the caller's.
    """
    if services.settings.auth_mode is not AuthMode.TWITCH:
        return await services.users.register(twitch_id, login=login, display_name=display_name)
    if services.twitch is None:
        raise Unavailable("Twitch is not configured")
    found = await services.twitch.users(ids=[twitch_id])
    if not found:
        raise UserNotFound(f"Twitch knows no user with ID {twitch_id}")
    known = await services.users.get(twitch_id)
    twitch_user = found[0]
    user = await services.users.sign_in(
        twitch_user.id,
        login=twitch_user.login,
        display_name=twitch_user.display_name,
        profile_image_url=twitch_user.profile_image_url,
    )
    return user, known is None


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
