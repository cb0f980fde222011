"""Logging in and out."""

from __future__ import annotations

from streamchat.errors import UserNotFound
from streamchat.services import Services
from streamchat.store.models import User
from streamchat.store.sessions import session_key
from streamchat.twitch.helix import HelixUser

__all__ = ["log_in", "log_in_with_twitch", "log_out"]


async def log_in(services: Services, twitch_id: str) -> tuple[User, str]:
    """Start a session for a registered user; return them and the session's token.

    Sessions beyond the user's limit are revoked, oldest first, and their
    WebSockets closed (4001) on every process.
    """
    user = await services.users.get(twitch_id)
    if user is None:
        raise UserNotFound(f"no user with Twitch ID {twitch_id}; register first")
    return user, await _start_session(services, user)


async def log_in_with_twitch(services: Services, twitch_user: HelixUser) -> tuple[User, str]:
    """Start a session for the user Twitch vouched for, registering them if new and
    bringing their login, display name and image up to date; return them and the token."""
    user = await services.users.sign_in(
        twitch_user.id,
        login=twitch_user.login,
        display_name=twitch_user.display_name,
        profile_image_url=twitch_user.profile_image_url,
    )
    return user, await _start_session(services, user)


async def _start_session(services: Services, user: User) -> str:
    session = await services.sessions.create(user.twitch_id)
    for key in session.revoked:
        await services.connections.end_session(key)
    return session.token


async def log_out(services: Services, token: str) -> bool:
    """End the session everywhere: revoke it and close its WebSockets (4001) on every
    process. False if there was no such session."""
    if not await services.sessions.revoke(token):
        return False
    await services.connections.end_session(session_key(token))
    return True
