"""Logging in and out with a server-side cookie session."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from streamchat.config import AuthMode
from streamchat.errors import (
    CrossSiteRequest,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    TooManyAttempts,
    Unavailable,
    UserNotFound,
)
from streamchat.http.deps import SESSION_COOKIE, ServicesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import LoginIn, UserOut
from streamchat.http.throttle import client_address
from streamchat.http.users import user_out
from streamchat.store.sessions import session_key

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["auth"], responses=error_responses(Unavailable))


class DevLoginDisabled(Forbidden):
    code = "dev_login_disabled"


@router.post(
    "/login",
    response_model=UserOut,
    responses=error_responses(
        DevLoginDisabled,
        CrossSiteRequest,
        UserNotFound,
        PayloadTooLarge,
        InvalidInput,
        TooManyAttempts,
    ),
)
async def login(
    body: LoginIn, request: Request, services: ServicesDep, response: Response
) -> UserOut:
    """Log in by Twitch ID (``dev`` auth mode only) and receive the session cookie."""
    settings = services.settings
    if settings.auth_mode is not AuthMode.DEV:
        raise DevLoginDisabled("logging in by ID is only possible in dev auth mode")
    services.throttles.login(client_address(request), body.twitch_id)
    user = await services.users.get(body.twitch_id)
    if user is None:
        raise UserNotFound(f"no user with Twitch ID {body.twitch_id}; register first")
    session = await services.sessions.create(user.twitch_id)
    for key in session.revoked:
        # Pushed out by this login: their WebSockets close too (4001).
        await services.connections.end_session(key)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    return await user_out(services, user)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(CrossSiteRequest),
)
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the session everywhere and clear the cookie; harmless without one."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and await services.sessions.revoke(token):
        # Its WebSockets close too, on every server process (close code 4001).
        await services.connections.end_session(session_key(token))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=services.settings.cookie_secure,
    )
    return response
