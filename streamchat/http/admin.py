"""Operator endpoints, behind ``STREAMCHAT_ADMIN_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from streamchat import actions
from streamchat.errors import (
    ActorCrashed,
    ActorTimeout,
    ActorUnavailable,
    AdminDisabled,
    CrossSiteRequest,
    Forbidden,
    InvalidCommand,
    InvalidInput,
    LoginTaken,
    MailboxFull,
    NotAuthenticated,
    PayloadTooLarge,
    StreamerNotFound,
    TooManyAttempts,
    TwitchDisabled,
    TwitchRefused,
    TwitchUnavailable,
    Unavailable,
    UnknownActor,
    UnknownRoom,
)
from streamchat.http.deps import ServicesDep, ThrottlesDep
from streamchat.http.errors import error_responses
from streamchat.http.schemas import NOT_BLANK, RoomName, StreamerOut, stripped_printable
from streamchat.http.throttle import client_address
from streamchat.protocol import MAX_TEXT_LENGTH

__all__ = ["ADMIN_ERRORS", "require_admin", "router"]


async def require_admin(
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    expected = services.settings.admin_token
    if not expected:
        raise AdminDisabled("administration is disabled: STREAMCHAT_ADMIN_TOKEN is not set")
    address = client_address(request)
    # Refused before the token is even compared: a guesser learns nothing more.
    throttles.check_admin(address)
    # "Bearer <token>", with any spacing HTTP allows around and between them.
    scheme, token = [*(authorization or "").split(None, 1), "", ""][:2]
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        throttles.admin_failed(address)
        raise NotAuthenticated("send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        throttles.admin_failed(address)
        raise Forbidden("wrong admin token")


#: What :func:`require_admin` refuses with.
ADMIN_ERRORS = (NotAuthenticated, AdminDisabled, Forbidden, TooManyAttempts)
# Every admin request needs the token (and its header may be malformed); every write may
# be refused as cross-site or too large.
_READ_ERRORS = (*ADMIN_ERRORS, InvalidInput, Unavailable)
_WRITE_ERRORS = (*_READ_ERRORS, CrossSiteRequest, PayloadTooLarge)

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class EventIn(BaseModel):
    kind: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$", examples=["notice"])
    ]
    data: dict[str, Any] = Field(default_factory=dict, examples=[{"text": "raid incoming"}])


@router.post(
    "/rooms/{room}/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(*_WRITE_ERRORS, UnknownRoom),
)
async def broadcast_event(room: RoomName, body: EventIn, services: ServicesDep) -> dict[str, str]:
    """Send an ``event`` (a system broadcast) to everyone in a room right now."""
    await actions.announce(services, room, body.kind, body.data)
    return {"status": "sent"}


class CommandIn(BaseModel):
    command: Annotated[str, Field(min_length=1, max_length=64, examples=["refresh"])]
    args: dict[str, Any] = Field(default_factory=dict, examples=[{}])


class BroadcastIn(BaseModel):
    text: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=NOT_BLANK),
        AfterValidator(stripped_printable),
    ]


@router.get("/actors", responses=error_responses(*_READ_ERRORS))
async def list_actors(services: ServicesDep) -> dict[str, Any]:
    """Every actor on every live process: its state, mailbox depth, restarts and last error."""
    return await services.cluster.listing()


@router.post(
    "/actors/{name}/commands",
    responses=error_responses(
        *_WRITE_ERRORS,
        UnknownActor,
        InvalidCommand,
        MailboxFull,
        ActorUnavailable,
        ActorCrashed,
        ActorTimeout,
    ),
)
async def command_actor(
    name: Annotated[str, Path(description="An actor's name.", examples=["stream-watcher"])],
    body: CommandIn,
    services: ServicesDep,
) -> dict[str, Any]:
    """Send a command to an actor, wherever it runs, and return its reply."""
    reply = await services.cluster.command(name, body.command, body.args)
    return {"actor": name, "command": body.command, "reply": reply}


#: A Twitch login, as Twitch allows them.
_LOGIN = r"^[A-Za-z0-9_]{1,25}$"


class StreamerIn(BaseModel):
    login: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,25}$"), Field(examples=["pixelpaladin"])
    ]


@router.post(
    "/streamers",
    status_code=status.HTTP_201_CREATED,
    response_model=StreamerOut,
    responses=error_responses(
        *_WRITE_ERRORS,
        StreamerNotFound,
        TwitchUnavailable,
        TwitchRefused,
        TwitchDisabled,
        LoginTaken,
    ),
)
async def add_streamer(body: StreamerIn, services: ServicesDep) -> StreamerOut:
    """Add a streamer (and their room) to the catalogue, as Helix knows them."""
    return StreamerOut.of(await actions.add_streamer(services, body.login))


@router.delete(
    "/streamers/{login}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*_WRITE_ERRORS, StreamerNotFound),
)
async def remove_streamer(
    login: Annotated[str, Path(pattern=_LOGIN, examples=["pixelpaladin"])],
    services: ServicesDep,
) -> Response:
    """Remove a streamer from the catalogue; their room takes no new subscriptions."""
    await actions.remove_streamer(services, login)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/broadcast",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(*_WRITE_ERRORS),
)
async def broadcast(body: BroadcastIn, services: ServicesDep) -> dict[str, str]:
    """An ``event`` of kind ``broadcast`` to every room on every process, and a broadcast
    command to every actor."""
    await actions.broadcast(services, body.text)
    return {"status": "sent"}
