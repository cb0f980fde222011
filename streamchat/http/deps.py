"""Request dependencies: the app's services and the caller's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from streamchat.cookies import session_token
from streamchat.errors import NotAuthenticated
from streamchat.http.access import UNRESOLVED, resolved_user
from streamchat.http.throttle import Throttles
from streamchat.services import Services
from streamchat.store.models import User

__all__ = [
    "CurrentUser",
    "OptionalUser",
    "ServicesDep",
    "ThrottlesDep",
    "get_services",
]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_throttles(request: Request) -> Throttles:
    throttles: Throttles = request.app.state.throttles
    return throttles


ThrottlesDep = Annotated[Throttles, Depends(get_throttles)]


async def optional_user(request: Request, services: ServicesDep) -> User | None:
    found = resolved_user(request)
    if found is not UNRESOLVED:
        return found  # type: ignore[no-any-return]
    token = session_token(request.headers)
    return await services.sessions.resolve(token) if token is not None else None


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise NotAuthenticated("log in first: no valid session cookie")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]
