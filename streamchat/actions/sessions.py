"""Logging in and out."""

from __future__ import annotations

from streamchat.errors import UserNotFound
from streamchat.services import Services
from streamchat.store.models import User
from streamchat.store.sessions import session_key

__all__ = ["log_in", "log_out"]


async def log_in(services: Services, twitch_id: str) -> tuple[User, str]:
    """Start a session for a registered user; return them and the session's token.

    Sessions beyond the user's limit are revoked, oldest first, and their
    WebSockets closed (4001) on every process.
    """
    user = await services.users.get(twitch_id)
    if user is None:
        raise UserNotFound(f"no user with Twitch ID {twitch_id}; register first")
    session = await services.sessions.create(user.twitch_id)
    for key in session.revoked:
        await services.connections.end_session(key)
    return user, session.token


async def log_out(services: Services, token: str) -> bool:
    """End the session everywhere: revoke it and close its WebSockets (4001) on every
    process. False if there was no such session."""
    if not await services.sessions.revoke(token):
        return False
    await services.connections.end_session(session_key(token))
    return True
