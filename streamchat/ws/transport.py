"""A direct line from a connection to its socket, for the fan-out hot path.

ASGI sends each frame through the whole middleware chain and one ``await``
per connection; fanning a room out to thousands of connections that way costs
more than everything else together. uvicorn lets the server choose its
WebSocket protocol class, so streamchat runs its own subclass of uvicorn's
sans-I/O protocol (``uvicorn --ws streamchat.ws.transport:StreamchatWebSocketProtocol``,
set by ``streamchat serve``). It is the stock protocol plus one ASGI scope
extension, ``"streamchat.wire"``: a :class:`DirectWire` that writes
ready-made text frames straight to the transport. The handshake, reading,
pings and closing stay uvicorn's and websockets'.

Without the extension (another server, another protocol class) connections
fall back to plain ASGI ``send``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

__all__ = [
    "PROTOCOL_CLASS",
    "WIRE_EXTENSION",
    "DirectWire",
    "StreamchatWebSocketProtocol",
    "text_frame",
]

WIRE_EXTENSION = "streamchat.wire"
#: What to pass uvicorn as ``ws``.
PROTOCOL_CLASS = "streamchat.ws.transport:StreamchatWebSocketProtocol"


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked WebSocket text frame (RFC 6455 §5.2) holding ``payload``."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class DirectWire:
    """Write access to one WebSocket's transport, shared with uvicorn's protocol."""

    __slots__ = ("_on_writable", "_protocol")

    def __init__(self, protocol: StreamchatWebSocketProtocol) -> None:
        self._protocol = protocol
        self._on_writable: Callable[[], None] | None = None

    @property
    def open(self) -> bool:
        protocol = self._protocol
        return not (protocol.close_sent or protocol.disconnected)

    @property
    def writable(self) -> bool:
        """False while the socket's buffer is over its high-water mark."""
        return self._protocol.writable.is_set() and self.open

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._protocol.transport.get_write_buffer_size()

    def write(self, frame: bytes) -> None:
        """Queue a complete frame (see :func:`text_frame`) on the socket."""
        if self.open:
            self._protocol.transport.write(frame)

    def offer(self, frame: bytes) -> int:
        """Write ``frame`` if the socket is open and not backed up.

        Returns the bytes then waiting in the socket's buffer, or -1 when the
        frame was not written. This is the fan-out's inner loop, hence one call.
        """
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or not protocol.writable.is_set():
            return -1
        transport = protocol.transport
        transport.write(frame)
        return transport.get_write_buffer_size()

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever the socket drains below its low-water mark."""
        self._on_writable = callback

    def abort(self, code: int, reason: str) -> None:
        """Queue a close frame and drop the connection if the peer does not answer soon.

        For a peer that stopped reading, a polite close would wait forever for
        the socket to drain.
        """
        self._protocol.close_now(code, reason)

    def _writable(self) -> None:
        if self._on_writable is not None:
            self._on_writable()


class _Inbox:
    """What ``asyncio.Queue`` does for uvicorn's protocol, for a fraction of its memory.

    uvicorn only puts without waiting, gets, and asks whether it is empty; an
    ``asyncio.Queue`` holds four deques (about 3 kB) for that, on every idle
    connection. Waiters and items take memory only while there are some.
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        # Like asyncio.Queue: one item wakes one getter.
        self._wake_next()

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # As asyncio.Queue.get: a getter woken but cancelled passes the wakeup on.
                waiter.cancel()
                if self._waiters and waiter in self._waiters:
                    self._waiters.remove(waiter)
                if self._items and not waiter.cancelled():
                    self._wake_next()
                raise
        return self._items.pop(0)

    def _wake_next(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return


class _Flag:
    """``asyncio.Event`` without its deque: uvicorn's ``writable``, set nearly always."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class StreamchatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with a :class:`DirectWire` in the scope."""

    wire: DirectWire

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same behaviour, lighter objects: see _Inbox and _Flag.
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        self.wire = DirectWire(self)
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The ASGI task is created but has not run yet: it will see this.
            scope["extensions"][WIRE_EXTENSION] = self.wire

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response stay referenced for the
            # connection's life (here, and the request in websockets' parser
            # frame) but are not read again: drop their headers, ~3 kB.
            self.request.headers.clear()
            self.response.headers.clear()

    def send_receive_event_to_app(self) -> None:
        # uvicorn's, except for a text frame that is not UTF-8: RFC 6455 fails the
        # connection with 1007, and a client's bad bytes are not a server error to
        # log with a traceback.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.close_now(1007, "invalid UTF-8 in a text frame")
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.wire._writable()

    def close_now(self, code: int, reason: str) -> None:
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # As uvicorn's own close: read on, so the peer's answering close frame is seen
        # and the connection ends at once (not when the timer below cuts it off).
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # A reading peer answers and uvicorn closes; one that never reads is cut off.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
