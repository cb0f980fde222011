"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from streamchat.http.deps import ServicesDep
from streamchat.http.schemas import NotReadyOut

__all__ = ["router"]

log = logging.getLogger("streamchat.http")

router = APIRouter(tags=["health"])

# A probe that hangs is worse than one that fails: orchestrators time out anyway.
_PING_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"model": NotReadyOut, "description": "A dependency is not ready."}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """The process can serve: its database answers a read of a real table in time (a
    stuck table shows), and its broker link is up."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            await services.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness check failed: database: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    health = services.pubsub.health
    if health.ok:
        checks["broker"] = "ok"
    else:
        checks["broker"] = health.state.value if not health.connected else "not_publishing"
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    failing = ", ".join(name for name, value in checks.items() if value != "ok")
    return JSONResponse(
        {
            "status": "unavailable",
            "error": {"code": "unavailable", "message": f"not ready: {failing}"},
            "checks": checks,
        },
        status_code=503,
    )
