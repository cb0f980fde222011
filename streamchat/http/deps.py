"""Request dependencies: the app's services and the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from streamchat.actors import Cluster
from streamchat.config import Settings
from streamchat.errors import NotAuthenticated
from streamchat.http.access import SESSION_COOKIE, UNRESOLVED, resolved_user, session_token
from streamchat.http.throttle import Throttles
from streamchat.metrics import Metrics
from streamchat.pubsub import PubSub
from streamchat.rooms.service import RoomService
from streamchat.store.database import Database
from streamchat.store.models import User
from streamchat.store.sessions import SessionStore
from streamchat.store.streamers import StreamerStore
from streamchat.store.users import UserStore
from streamchat.ws.connection import ConnectionLimits
from streamchat.ws.registry import ConnectionRegistry

__all__ = [
    "SESSION_COOKIE",
    "CurrentUser",
    "OptionalUser",
    "Services",
    "ServicesDep",
    "get_services",
]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler may use; built once per app in its lifespan."""

    settings: Settings
    db: Database
    users: UserStore
    sessions: SessionStore
    streamers: StreamerStore
    pubsub: PubSub
    rooms: RoomService
    connections: ConnectionRegistry
    cluster: Cluster
    metrics: Metrics
    throttles: Throttles
    connection_limits: ConnectionLimits
    allowed_origins: frozenset[str]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


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
