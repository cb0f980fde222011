"""Operator endpoints, behind ``STREAMCHAT_ADMIN_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, status
from pydantic import BaseModel, Field

from streamchat.errors import Forbidden, NotAuthenticated
from streamchat.http.deps import ServicesDep

__all__ = ["router"]


class AdminDisabled(Forbidden):
    code = "admin_disabled"


async def require_admin(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    expected = services.settings.admin_token
    if not expected:
        raise AdminDisabled("administration is disabled: STREAMCHAT_ADMIN_TOKEN is not set")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("wrong admin token")


router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class EventIn(BaseModel):
    kind: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")]
    data: dict[str, Any] = Field(default_factory=dict)


@router.post("/rooms/{room}/events", status_code=status.HTTP_202_ACCEPTED)
async def broadcast_event(room: str, body: EventIn, services: ServicesDep) -> dict[str, str]:
    """Send an ``event`` (a system broadcast) to everyone in a room right now."""
    await services.rooms.resolve(room)
    await services.rooms.announce(room, body.kind, body.data)
    return {"status": "sent"}
