"""One client's WebSocket: decode requests, answer them, write what rooms hand it.

Outgoing frames go through a bounded outbox: rooms append encoded frames
without waiting, and a single writer task sends everything that is waiting as
one WebSocket frame (objects separated by ``\\n``). A client that stops reading
lets its outbox grow until ``max_queued_bytes``; then it is disconnected with
close code 4008, so it costs bounded memory and never slows anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.websockets import WebSocket

from streamchat.errors import StreamchatError, TooManySubscriptions, Unavailable
from streamchat.protocol import (
    MAX_HISTORY,
    Ack,
    History,
    HistoryReply,
    Ping,
    Pong,
    Presence,
    PresenceReply,
    Publish,
    Request,
    RequestError,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    UserRef,
    decode_requests,
    encode,
    error_frame,
)
from streamchat.pubsub import PubSubError
from streamchat.rooms.service import RoomService

__all__ = ["CloseCode", "Connection", "ConnectionLimits"]

log = logging.getLogger("streamchat.ws")

#: Seconds to wait for a closing frame to be taken by the socket.
_CLOSE_TIMEOUT = 10.0


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    POLICY = 1008
    SESSION_ENDED = 4001
    FORBIDDEN_ORIGIN = 4003
    TOO_SLOW = 4008


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_subscriptions: int = 50
    #: Bytes waiting in the outbox before the client is dropped as too slow.
    max_queued_bytes: int = 1 << 20
    #: A frame is closed at this size; what remains goes in the next one.
    max_frame_bytes: int = 64 << 10
    #: More errors than this within ``error_window`` seconds closes the connection.
    max_errors: int = 20
    error_window: float = 10.0


class Connection:
    """A connected client: its user (if logged in), its rooms and its outbox."""

    def __init__(
        self,
        websocket: WebSocket,
        rooms: RoomService,
        *,
        user: UserRef | None,
        session_key: str | None,
        limits: ConnectionLimits,
    ) -> None:
        self.user = user
        self.session_key = session_key
        self._ws = websocket
        self._rooms = rooms
        self._limits = limits
        self._subscribed: set[str] = set()
        self._outbox: deque[bytes] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._errors: deque[float] = deque()
        self._closing: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._receiving: asyncio.Future[Any] | None = None

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._subscribed)

    # -- the Member side: frames from rooms ---------------------------------------------

    def deliver(self, frame: bytes) -> None:
        if self._closing is not None:
            return
        self._outbox.append(frame)
        self._queued += len(frame)
        if self._queued > self._limits.max_queued_bytes:
            self.overflow()
            return
        self._wake.set()

    def overflow(self) -> None:
        self.close(CloseCode.TOO_SLOW, "too slow: the outgoing queue overflowed")

    async def drained(self) -> None:
        if self._queued > self._limits.max_queued_bytes // 4:
            self._drained.clear()
            await self._drained.wait()

    def close(self, code: int, reason: str) -> None:
        """Close the connection now; frames still queued are dropped."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._outbox.clear()
        self._queued = 0
        self._drained.set()
        # The writer may be stuck sending to a client that does not read, and the
        # reader waiting for one that does not write: stop both, serve() closes.
        if self._writer is not None:
            self._writer.cancel()
        if self._receiving is not None:
            self._receiving.cancel()

    # -- running -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until the client goes or the connection is closed."""
        self._writer = asyncio.create_task(self._write(), name="ws-writer")
        try:
            await self._read()
        finally:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            await self._leave_all()
        if self._closing is not None:
            code, reason = self._closing
            # The close frame waits for the socket to take it, which a frozen
            # client may never allow; then the server gives up on the peer.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._ws.close(code, reason)

    async def _write(self) -> None:
        send = self._ws.send
        max_frame = self._limits.max_frame_bytes
        outbox = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox and self._closing is None:
                batch = [outbox.popleft()]
                size = len(batch[0])
                while outbox and size + len(outbox[0]) < max_frame:
                    frame = outbox.popleft()
                    size += len(frame)
                    batch.append(frame)
                self._queued -= size
                await send({"type": "websocket.send", "text": b"\n".join(batch).decode()})
            if self._queued <= self._limits.max_queued_bytes // 4:
                self._drained.set()

    async def _read(self) -> None:
        receive = self._ws.receive
        while self._closing is None:
            self._receiving = asyncio.ensure_future(receive())
            try:
                message = await self._receiving
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if (task is not None and task.cancelling()) or self._closing is None:
                    raise
                return  # close() interrupted the wait
            finally:
                self._receiving = None
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            data: Any = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            for request in decode_requests(data):
                if self._closing is not None:
                    return
                await self._handle(request)

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: Request | RequestError) -> None:
        if isinstance(request, RequestError):
            self._fail(request.id, request.error)
            return
        try:
            reply = await self._answer(request)
        except StreamchatError as exc:
            self._fail(request.id, exc)
        except PubSubError as exc:
            log.warning("request %s failed: %s", type(request).__name__, exc)
            self._fail(request.id, Unavailable("chat storage is unavailable; try again"))
        except Exception:
            log.exception("request %s failed", type(request).__name__)
            self._fail(request.id, Unavailable("internal error; try again"))
        else:
            if reply is not None:
                self.deliver(reply)

    async def _answer(self, request: Request) -> bytes | None:
        rooms = self._rooms
        match request:
            case Publish(room=room, text=text, nonce=nonce, id=request_id):
                posted = await rooms.post(self.user, room, text, nonce=nonce)
                return encode(
                    Ack(id=request_id, room=room, seq=posted.seq, message_id=posted.message_id)
                )
            case Subscribe(room=room, since=since, epoch=epoch, id=request_id):
                if room in self._subscribed:
                    # Resubscribing (e.g. with `since`): the user stays present throughout.
                    await rooms.feeds.discard(room, self)
                    await rooms.subscribe(
                        self, room, None, since=since, epoch=epoch, request_id=request_id
                    )
                    return None
                if len(self._subscribed) >= self._limits.max_subscriptions:
                    raise TooManySubscriptions(
                        f"at most {self._limits.max_subscriptions} rooms per connection"
                    )
                await rooms.subscribe(
                    self, room, self.user, since=since, epoch=epoch, request_id=request_id
                )
                self._subscribed.add(room)
                return None
            case Unsubscribe(room=room, id=request_id):
                if room in self._subscribed:
                    self._subscribed.discard(room)
                    await rooms.unsubscribe(self, room, self.user)
                return encode(Unsubscribed(id=request_id, room=room))
            case History(room=room, before=before, limit=limit, id=request_id):
                frames = await rooms.history(room, before=before, limit=min(limit, MAX_HISTORY))
                messages = [msgspec.Raw(frame) for frame in frames]
                return encode(HistoryReply(id=request_id, room=room, messages=messages))
            case Presence(room=room, id=request_id):
                users = await rooms.who(room)
                return encode(
                    PresenceReply(id=request_id, room=room, count=len(users), users=users)
                )
            case Ping(id=request_id):
                return encode(Pong(id=request_id))
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _fail(self, request_id: int | str | None, error: StreamchatError) -> None:
        self.deliver(error_frame(request_id, error))
        now = time.monotonic()
        self._errors.append(now)
        while self._errors and self._errors[0] <= now - self._limits.error_window:
            self._errors.popleft()
        if len(self._errors) > self._limits.max_errors:
            self.close(CloseCode.POLICY, "too many errors")

    async def _leave_all(self) -> None:
        rooms, self._subscribed = self._subscribed, set()
        for room in rooms:
            try:
                await self._rooms.unsubscribe(self, room, self.user)
            except Exception:
                log.exception("leaving room %s failed", room)
