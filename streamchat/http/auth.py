"""Logging in and out with a server-side cookie session."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from streamchat import actions
from streamchat.config import AuthMode, Settings
from streamchat.cookies import SESSION_COOKIE
from streamchat.errors import (
    CrossSiteRequest,
    DevLoginDisabled,
    InvalidInput,
    PayloadTooLarge,
    TooManyAttempts,
    Unavailable,
    UserNotFound,
)
from streamchat.http.deps import OptionalUser, ServicesDep, ThrottlesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import LoginIn, SessionOut, UserOut
from streamchat.http.throttle import client_address
from streamchat.http.users import user_out

__all__ = ["router", "set_session_cookie"]

router = APIRouter(prefix="/api", tags=["auth"], responses=error_responses(Unavailable))


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
    body: LoginIn,
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    response: Response,
) -> UserOut:
    """Log in by Twitch ID (``dev`` auth mode only) and receive the session cookie."""
    settings = services.settings
    if settings.auth_mode is not AuthMode.DEV:
        raise DevLoginDisabled(
            "logging in by ID is only possible in dev auth mode; log in with Twitch at "
            "/auth/twitch/login"
        )
    throttles.login(client_address(request), body.twitch_id)
    user, token = await actions.log_in(services, body.twitch_id)
    set_session_cookie(response, settings, token)
    return await user_out(services, user)


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(CrossSiteRequest),
)
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the session everywhere and clear the cookie; harmless without one."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await actions.log_out(services, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=services.settings.cookie_secure,
    )
    return response


@router.get("/session", response_model=SessionOut)
async def session(user: OptionalUser, services: ServicesDep) -> SessionOut:
    """Who the session cookie belongs to, or ``null``: never an error, unlike ``/api/me``
    (a page asks this on every load, logged in or not)."""
    return SessionOut(user=await user_out(services, user) if user is not None else None)
