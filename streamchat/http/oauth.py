"""Logging in with Twitch: the OAuth authorization-code flow (``twitch`` auth mode).

``GET /auth/twitch/login`` sends the browser to Twitch's consent page with a
``state`` that a short-lived HttpOnly cookie binds to this browser. Twitch
sends it back to ``GET /auth/twitch/callback`` with a code, which is exchanged
for a user token; the token is validated, tells who logged in, and is revoked:
streamchat keeps no Twitch token, only its own session.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from streamchat import actions
from streamchat.config import AuthMode, Settings
from streamchat.errors import (
    LoginDenied,
    LoginExpired,
    LoginFailed,
    StreamchatError,
    TooManyAttempts,
    TwitchDisabled,
    TwitchRefused,
    TwitchUnavailable,
)
from streamchat.http.auth import set_session_cookie
from streamchat.http.deps import ServicesDep, ThrottlesDep
from streamchat.http.errors import error_response, error_responses
from streamchat.http.throttle import client_address
from streamchat.services import Services
from streamchat.store.models import User
from streamchat.twitch.api import TwitchAPI

__all__ = ["CALLBACK_PATH", "STATE_COOKIE", "router"]

log = logging.getLogger("streamchat.auth")

router = APIRouter(prefix="/auth/twitch", tags=["auth"])

CALLBACK_PATH = "/auth/twitch/callback"
STATE_COOKIE = "streamchat_oauth_state"
#: Seconds a viewer has to get through Twitch's consent page.
_STATE_TTL = 600
#: No scope: identity is all a login needs.
_SCOPE = ""

_Param = Annotated[str | None, Query(max_length=512)]


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(TwitchDisabled, TwitchUnavailable),
)
async def twitch_login(services: ServicesDep) -> Response:
    """Send the browser to Twitch's consent page."""
    settings, twitch = _twitch_mode(services)
    state = secrets.token_urlsafe(32)
    response = RedirectResponse(
        twitch.authorize_url(redirect_uri=_redirect_uri(settings), state=state, scope=_SCOPE),
        status_code=302,
    )
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=_STATE_TTL,
        path="/auth/twitch",
        httponly=True,
        # Lax: sent on Twitch's top-level redirect back to us, never on a sub-request.
        samesite="lax",
        secure=_secure(settings),
    )
    return response


@router.get(
    "/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(
        LoginFailed,
        LoginDenied,
        LoginExpired,
        TwitchUnavailable,
        TooManyAttempts,
        TwitchDisabled,
    ),
)
async def twitch_callback(
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    code: _Param = None,
    state: _Param = None,
    error: _Param = None,
    error_description: _Param = None,
) -> Response:
    """Where Twitch sends the browser back: start a session and go to ``/``.

    A failure is a JSON error; a browser that asked for a page (``Accept: text/html``)
    is sent to ``/?login_error=<code>`` instead, where the page explains it."""
    settings, twitch = _twitch_mode(services)
    expected = request.cookies.get(STATE_COOKIE)
    # The state is single-use: whatever happens next, this browser's is spent.
    response: Response
    try:
        if error is not None:
            if error == "access_denied":
                raise LoginDenied("you declined to log in with Twitch")
            raise LoginFailed(f"Twitch did not log you in: {error_description or error}")
        if not expected or not state or not secrets.compare_digest(expected, state):
            raise LoginExpired("this login link is not the one this browser started; try again")
        if not code:
            raise LoginFailed("Twitch sent no login code")
        throttles.login_from(client_address(request))
        user, token = await _log_in(services, twitch, settings, code)
    except StreamchatError as exc:
        log.info("a login with Twitch failed: %s (%s)", exc.code, exc)
        if _from_a_browser(request):
            # A person, not a program: back to the page, which says what went wrong.
            response = RedirectResponse(f"/?login_error={exc.code}", status_code=302)
        else:
            response = error_response(exc)
    else:
        log.info("user %s logged in with Twitch", user.twitch_id)
        response = RedirectResponse("/", status_code=302)
        set_session_cookie(response, settings, token)
    _forget_state(response, settings)
    return response


async def _log_in(
    services: Services, twitch: TwitchAPI, settings: Settings, code: str
) -> tuple[User, str]:
    try:
        return await _sign_in(services, twitch, settings, code)
    except TwitchRefused as exc:
        raise LoginFailed(f"Twitch refused the login: {exc.message}") from exc


async def _sign_in(
    services: Services, twitch: TwitchAPI, settings: Settings, code: str
) -> tuple[User, str]:
    access_token = await twitch.exchange_code(code, redirect_uri=_redirect_uri(settings))
    try:
        info = await twitch.validate(access_token)
        if info.client_id != twitch.client_id or not info.user_id:
            raise LoginFailed("Twitch's token is for another application")
        twitch_user = await twitch.token_user(access_token)
        if twitch_user.id != info.user_id:
            raise LoginFailed("Twitch named two different users for one login")
    finally:
        # Identity was all we needed: the token goes, nothing of it is kept.
        await twitch.revoke(access_token)
    return await actions.log_in_with_twitch(services, twitch_user)


def _from_a_browser(request: Request) -> bool:
    """A browser navigating (it asks for a page) rather than a program asking for JSON."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _twitch_mode(services: Services) -> tuple[Settings, TwitchAPI]:
    settings = services.settings
    if settings.auth_mode is not AuthMode.TWITCH or services.twitch is None:
        raise TwitchDisabled("logging in with Twitch needs STREAMCHAT_AUTH_MODE=twitch")
    return settings, services.twitch


def _redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url}{CALLBACK_PATH}"


def _secure(settings: Settings) -> bool:
    return settings.cookie_secure or (settings.public_url or "").startswith("https://")


def _forget_state(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        STATE_COOKIE, path="/auth/twitch", httponly=True, samesite="lax", secure=_secure(settings)
    )
