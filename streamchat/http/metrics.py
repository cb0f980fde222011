"""``GET /metrics``: this process's Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from streamchat.errors import InvalidInput
from streamchat.http.admin import ADMIN_ERRORS, require_admin
from streamchat.http.deps import ServicesDep, ThrottlesDep
from streamchat.http.errors import error_responses
from streamchat.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        },
        # The token is asked for only when STREAMCHAT_METRICS_PUBLIC is false.
        **error_responses(*ADMIN_ERRORS, InvalidInput),
    },
)
async def metrics(
    request: Request,
    services: ServicesDep,
    throttles: ThrottlesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Prometheus text: connections, subscriptions, messages, latency, actors, broker and
    database health. Behind the admin token unless ``STREAMCHAT_METRICS_PUBLIC`` is true."""
    if not services.settings.metrics_public:
        await require_admin(request, services, throttles, authorization)
    return Response(await services.metrics.render(), media_type=CONTENT_TYPE)
