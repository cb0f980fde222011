"""Registration, the caller's profile and their favourite streamer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from streamchat import actions
from streamchat.config import AuthMode
from streamchat.errors import (
    CrossSiteRequest,
    InvalidInput,
    LoginTaken,
    NotAuthenticated,
    PayloadTooLarge,
    StreamerNotFound,
    TwitchRefused,
    TwitchUnavailable,
    Unavailable,
    UserNotFound,
)
from streamchat.http.admin import ADMIN_ERRORS, require_admin
from streamchat.http.deps import CurrentUser, ServicesDep, ThrottlesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import FavoriteIn, RegisterIn, UserOut
from streamchat.services import Services
from streamchat.store.models import User

__all__ = ["router", "user_out"]

router = APIRouter(prefix="/api", tags=["users"], responses=error_responses(Unavailable))


async def user_out(services: Services, user: User) -> UserOut:
    """The user as the API shows it, with their favourite streamer."""
    favorite_id = user.favorite_streamer_id
    favorite = await services.streamers.get(favorite_id) if favorite_id else None
    return UserOut.of(user, favorite=favorite)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": UserOut, "description": "The ID was known: the user, unchanged."},
        **error_responses(
            CrossSiteRequest,
            LoginTaken,
            PayloadTooLarge,
            InvalidInput,
            UserNotFound,
            TwitchUnavailable,
            TwitchRefused,
            *ADMIN_ERRORS,
        ),
    },
)
async def register(
    body: RegisterIn,
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    response: Response,
    authorization: Annotated[str | None, Header()] = None,
) -> UserOut:
    """Register a viewer by Twitch ID; idempotent. In the ``twitch`` auth mode, for operators
    only (``Authorization: Bearer <admin token>``), and only IDs that Twitch knows."""
    if services.settings.auth_mode is AuthMode.TWITCH:
        await require_admin(request, services, throttles, authorization)
    user, created = await actions.register(
        services, body.twitch_id, login=body.login, display_name=body.display_name
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return await user_out(services, user)


@router.get("/me", response_model=UserOut, responses=error_responses(NotAuthenticated))
async def me(user: CurrentUser, services: ServicesDep) -> UserOut:
    """The logged-in viewer, with their favourite streamer."""
    return await user_out(services, user)


@router.put(
    "/me/favorite",
    response_model=UserOut,
    responses=error_responses(
        NotAuthenticated, CrossSiteRequest, StreamerNotFound, PayloadTooLarge, InvalidInput
    ),
)
async def set_favorite(body: FavoriteIn, user: CurrentUser, services: ServicesDep) -> UserOut:
    """Pick a favourite streamer by login or ID."""
    streamer = await actions.set_favorite(services, user, body.streamer)
    return UserOut.of(user, favorite=streamer)


@router.delete(
    "/me/favorite",
    response_model=UserOut,
    responses=error_responses(NotAuthenticated, CrossSiteRequest),
)
async def clear_favorite(user: CurrentUser, services: ServicesDep) -> UserOut:
    """Clear the favourite streamer."""
    await actions.clear_favorite(services, user)
    return UserOut.of(user)
