"""Every error becomes ``{"error": {"code": …, "message": …}}`` with its status."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from starlette.exceptions import HTTPException

from streamchat.errors import InvalidInput, StreamchatError, Unavailable
from streamchat.http.schemas import ErrorOut
from streamchat.logs import REQUEST_ID_HEADER
from streamchat.pubsub import PubSubError

__all__ = ["OUTAGES", "error_response", "error_responses", "install_error_handlers"]

log = logging.getLogger("streamchat.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(error: StreamchatError) -> JSONResponse:
    return JSONResponse({"error": error.to_dict()}, status_code=error.status)


def error_responses(*errors: type[StreamchatError]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` documenting that a route may answer with these errors."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        codes.setdefault(error.status, []).append(error.code)
    return {
        status: {
            "model": ErrorOut,
            "description": f"{HTTPStatus(status).phrase}: "
            + ", ".join(f"`{code}`" for code in dict.fromkeys(found)),
        }
        for status, found in sorted(codes.items())
    }


def _field(loc: tuple[int | str, ...]) -> str:
    # Drop the "body"/"query" prefix: clients think in field names.
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts)


def _validation_error(exc: RequestValidationError) -> StreamchatError:
    problems = []
    for item in exc.errors():
        if item.get("type") == "json_invalid":
            return InvalidInput("the request body is not valid JSON")
        if tuple(item.get("loc", ())) == ("body",):
            return InvalidInput(
                "the request body must be a JSON object sent as Content-Type: application/json"
            )
        problems.append({"field": _field(tuple(item.get("loc", ()))), "message": item.get("msg")})
    summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems)
    return InvalidInput(summary or "invalid request", details=problems)


async def _on_streamchat_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StreamchatError)
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(_validation_error(exc))


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI's answer to a JSON body it could not decode (not UTF-8, nested too deep, a
        # number too long): a client's mistake like any malformed JSON.
        return error_response(InvalidInput("the request body cannot be read as JSON"))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


#: What a database or broker outage raises: the service is unavailable, not broken.
OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeout,
    OSError,
    PubSubError,
)


async def _on_outage(request: Request, exc: Exception) -> JSONResponse:
    # One line, no traceback: an outage makes every request fail the same way.
    log.warning(
        "%s %s: unavailable: %s: %s", request.method, request.url.path, type(exc).__name__, exc
    )
    return error_response(Unavailable("a service streamchat depends on is unavailable; retry"))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    # Starlette answers this one outside every middleware: the request id is added here.
    request_id = request.scope.get("state", {}).get("request_id")
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal server error"}},
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StreamchatError, _on_streamchat_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    for outage in OUTAGES:
        app.add_exception_handler(outage, _on_outage)
    app.add_exception_handler(Exception, _on_unexpected)
