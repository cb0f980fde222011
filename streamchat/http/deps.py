"""Request dependencies: the app's services and the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from streamchat.actors import Cluster
from streamchat.config import Settings
from streamchat.errors import NotAuthenticated
from streamchat.http.request_id import request_id
from streamchat.logs import log_http
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
    "LOGGED",
    "SESSION_COOKIE",
    "CurrentUser",
    "OptionalUser",
    "Services",
    "ServicesDep",
    "get_services",
]

SESSION_COOKIE = "streamchat_session"


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
    connection_limits: ConnectionLimits
    allowed_origins: frozenset[str]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def optional_user(request: Request, services: ServicesDep) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    # Our tokens are 43 characters; anything far longer is not one, so skip the lookup.
    if not token or len(token) > 128:
        return None
    return await services.sessions.resolve(token)


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise NotAuthenticated("log in first: no valid session cookie")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]


async def log_request(request: Request, user: OptionalUser) -> None:
    """The line every API request logs as it starts (the user is resolved once, and reused)."""
    log_http(
        request.method, request.url.path, user.twitch_id if user else None, request_id(request)
    )


#: Router dependencies of every API route: log the request as it starts.
LOGGED = [Depends(log_request)]
