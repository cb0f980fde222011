"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from streamchat.http.deps import ServicesDep

__all__ = ["router"]

log = logging.getLogger("streamchat.http")

router = APIRouter(tags=["health"])

# A probe that hangs is worse than one that fails: orchestrators time out anyway.
_PING_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """The process can serve: its database answers."""
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            await services.db.ping()
    except Exception as exc:
        log.warning("readiness check failed: database unreachable: %s", exc)
        return JSONResponse(
            {
                "status": "unavailable",
                "error": {"code": "unavailable", "message": "the database is unreachable"},
                "checks": {"database": "unreachable"},
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "checks": {"database": "ok"}})
