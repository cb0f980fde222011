"""The uvicorn and websockets internals that streamchat's protocol classes build on.

:mod:`streamchat.ws.transport` and :mod:`streamchat.http.protocol` subclass
uvicorn's protocol classes and use some of their attributes and methods, which
are not uvicorn's public API. A release that renames one would break every
WebSocket, or the HTTP deadline, at the first connection. ``streamchat serve``
calls :func:`check_server` first and refuses to start, naming the supported
versions, rather than serve broken sockets.

The versions are pinned in ``pyproject.toml`` (and the lock file) to the minor
releases below; upgrading them means running the transport's tests and
changing :data:`SUPPORTED`.
"""

from __future__ import annotations

import asyncio
from importlib import metadata

from streamchat.errors import CannotStart

__all__ = ["SUPPORTED", "check_server", "problems"]

#: ``major.minor`` of each package the protocol classes were written and tested for.
SUPPORTED = {"uvicorn": "0.54", "websockets": "17.4"}

# What the subclasses call or override, by class.
_WEBSOCKET_METHODS = (
    "handle_connect",
    "send",
    "send_receive_event_to_app",
    "resume_writing",
    "connection_made",
    "connection_lost",
)
# Set by the constructor, read or replaced by the subclass.
_WEBSOCKET_ATTRIBUTES = (
    "queue",
    "writable",
    "close_sent",
    "disconnected",
    "close_timeout",
    "close_timer",
    "read_paused",
    "handshake_complete",
    "frames",
    "curr_msg_data_type",
    "conn",
    "transport",
    "loop",
)
_HTTP_METHODS = (
    "connection_made",
    "connection_lost",
    "on_message_begin",
    "on_message_complete",
    "handle_websocket_upgrade",
)
_CONNECTION_METHODS = ("send_close", "data_to_send", "accept")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def problems() -> list[str]:
    """What is missing or unsupported; empty when the server can run."""
    found: list[str] = []
    for package, supported in SUPPORTED.items():
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            found.append(f"{package} is not installed")
            continue
        if _minor(installed) != supported:
            found.append(f"{package} {installed} is installed; supported is {supported}.x")
    try:
        from uvicorn.config import Config
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from uvicorn.server import ServerState
    except ImportError as exc:
        found.append(f"uvicorn lacks a module the transport needs: {exc}")
        return found
    for cls, names in (
        (WebSocketsSansIOProtocol, _WEBSOCKET_METHODS),
        (HttpToolsProtocol, _HTTP_METHODS),
    ):
        found.extend(
            f"{cls.__qualname__} has no method {name}"
            for name in names
            if not callable(getattr(cls, name, None))
        )
    # The attributes only exist on an instance: make one, connected to nothing.
    loop = asyncio.new_event_loop()
    try:
        config = Config(app=_no_app, ws="websockets-sansio", lifespan="off", log_config=None)
        config.load()
        protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop)
    except Exception as exc:
        found.append(f"WebSocketsSansIOProtocol cannot be built: {type(exc).__name__}: {exc}")
        return found
    finally:
        loop.close()
    found.extend(
        f"WebSocketsSansIOProtocol has no attribute {name}"
        for name in _WEBSOCKET_ATTRIBUTES
        if not hasattr(protocol, name)
    )
    conn = getattr(protocol, "conn", None)
    found.extend(
        f"the websockets ServerProtocol has no method {name}"
        for name in _CONNECTION_METHODS
        if conn is not None and not callable(getattr(conn, name, None))
    )
    return found


def check_server() -> None:
    """Raise :class:`CannotStart` naming the supported versions if the server cannot run."""
    found = problems()
    if found:
        wanted = ", ".join(f"{package} {minor}.x" for package, minor in SUPPORTED.items())
        raise CannotStart(f"streamchat's WebSocket transport needs {wanted}: " + "; ".join(found))


async def _no_app(scope: object, receive: object, send: object) -> None:
    raise RuntimeError("not served")
