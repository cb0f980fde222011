"""``GET /ws``: the room protocol's WebSocket endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.datastructures import URL, Headers
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from streamchat.cookies import session_token
from streamchat.errors import (
    CrossSiteRequest,
    StreamchatError,
    TooManyConnections,
    Unavailable,
)
from streamchat.logs import REQUEST_ID_HEADER, request_id_of
from streamchat.origins import is_trusted_origin
from streamchat.protocol import UserRef
from streamchat.rooms.service import RoomService
from streamchat.store.sessions import SessionStore, session_key
from streamchat.ws.connection import Connection, ConnectionLimits, Moderator
from streamchat.ws.registry import ConnectionRegistry
from streamchat.ws.transport import PROTOCOL_CLASS, WIRE_EXTENSION, DirectWire

__all__ = ["PATH", "Gateway", "websocket_endpoint"]

log = logging.getLogger("streamchat.ws")

PATH = "/ws"


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the endpoint needs of the app; the app keeps it as ``state.gateway``."""

    sessions: SessionStore
    rooms: RoomService
    connections: ConnectionRegistry
    limits: ConnectionLimits
    #: Origins besides the server's own whose pages may open a WebSocket.
    allowed_origins: frozenset[str]
    #: Takes a ``moderate`` request (the moderation action, bound to the app's services).
    moderate: Moderator | None = None


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one client of the room protocol, from handshake to close."""
    gateway: Gateway = websocket.app.state.gateway
    connections = gateway.connections
    client = websocket.scope.get("client")
    address = client[0] if client else "unknown"
    # Counted from the handshake on, so a burst of handshakes cannot all slip in.
    if not connections.admit_address(address, gateway.limits.max_per_ip):
        await _deny(websocket, TooManyConnections("too many connections from this address"))
        return
    connection = None
    try:
        connection = await _accept(websocket, gateway)
        if connection is None:
            return
        connections.add(connection)
        try:
            await connection.serve()
        finally:
            connections.discard(connection)
    finally:
        user = connection.user if connection is not None else None
        connections.release(address, user.id if user else None)


async def _deny(websocket: WebSocket, error: StreamchatError) -> None:
    """Refuse the handshake with an HTTP error the client can read."""
    await websocket.send_denial_response(
        JSONResponse({"error": error.to_dict()}, status_code=error.status)
    )


async def _accept(websocket: WebSocket, gateway: Gateway) -> Connection | None:
    """Check and accept the handshake; ``None`` if it was refused.

    A separate frame, and no caches on ``websocket``: what the handshake needed
    (headers, cookies, the user's database row) is garbage once it returns,
    rather than held for as long as the connection stays open.
    """
    scope = websocket.scope
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is not None and not is_trusted_origin(
        origin,
        scheme=URL(scope=scope).scheme,
        host=headers.get("host"),
        allowed=gateway.allowed_origins,
    ):
        # Before accept: the handshake is refused (HTTP 403), so a foreign page
        # cannot ride the user's cookie into a chat session.
        await _deny(websocket, CrossSiteRequest(f"WebSockets from origin {origin!r} are refused"))
        return None
    wire = scope.get("extensions", {}).get(WIRE_EXTENSION)
    if not isinstance(wire, DirectWire):
        log.error(
            "refusing a WebSocket: the server must run streamchat's WebSocket protocol "
            "(streamchat serve, or uvicorn --ws %s)",
            PROTOCOL_CLASS,
        )
        await websocket.close(1011)
        return None
    token = session_token(headers)
    try:
        user = await gateway.sessions.resolve(token) if token is not None else None
    except Exception as exc:
        # Our failure, not the client's: 503, which a client retries (a 403 says "don't").
        log.warning("could not check the session of a WebSocket (%s); refusing it with 503", exc)
        await _deny(websocket, Unavailable("sessions cannot be checked right now; retry"))
        return None
    limits = gateway.limits
    if user is not None and not gateway.connections.admit_user(user.twitch_id, limits.max_per_user):
        await _deny(websocket, TooManyConnections("too many connections for this user"))
        return None
    request_id = request_id_of(headers)
    try:
        await websocket.accept(headers=[(REQUEST_ID_HEADER.encode(), request_id.encode())])
    except BaseException:
        if user is not None:
            gateway.connections.release(None, user.twitch_id)
        raise
    # Nothing reads the request's headers after the handshake; the scope lives
    # as long as the connection.
    scope["headers"] = []
    return Connection(
        websocket,
        wire,
        gateway.rooms,
        user=UserRef(user.twitch_id, user.login, user.display_name) if user else None,
        session_key=session_key(token) if user and token else None,
        limits=limits,
        request_id=request_id,
        moderate=gateway.moderate,
    )
