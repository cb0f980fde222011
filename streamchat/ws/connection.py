"""One client's WebSocket: decode requests, answer them, write what rooms hand it.

Output takes two roads to the socket. Room traffic arrives as batches that
every member of the room shares: a connection with nothing else waiting writes
the batch's one ready-made frame straight to its socket, so a room fans out at
the cost of one socket write per member. Everything else (replies, errors, a
replay, or room traffic while the socket is backed up) waits in the
connection's own outbox, which is written as one frame of ``\n``-separated
objects at the next turn of the event loop.

Both roads are bounded: when what waits for a client (in the outbox and in
the socket's buffer) passes ``max_queued_bytes`` the client is too slow, and
it is disconnected with close code 4008 rather than cost unbounded memory or
slow anyone else.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.websockets import WebSocket

from streamchat.errors import (
    StreamchatError,
    TooManyRequests,
    TooManySubscriptions,
    Unavailable,
)
from streamchat.logs import ACCESS, log_ws
from streamchat.protocol import (
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
from streamchat.rooms.feeds import Batch
from streamchat.rooms.service import Outgoing, RoomService
from streamchat.ws.transport import DirectWire, text_frame

__all__ = ["CloseCode", "Connection", "ConnectionLimits"]

log = logging.getLogger("streamchat.ws")

_PIPELINE_DRAIN_TIMEOUT = 10.0

#: Each request's ``type``, for the request log.
_TYPES: dict[type[Request], str] = {
    cls: str(cls.__struct_config__.tag)
    for cls in (Subscribe, Unsubscribe, Publish, History, Presence, Ping)
}


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
    #: Publishes of one connection being stored at once; the next one waits.
    max_pipelined: int = 64
    #: More errors than this within ``error_window`` seconds closes the connection.
    max_errors: int = 20
    error_window: float = 10.0
    #: Requests one frame may carry; a frame with more is refused whole.
    max_requests_per_frame: int = 64
    #: Requests per second, with a burst of twice as many; None: unlimited.
    requests_per_second: float | None = 20.0
    #: Open connections from one address, and of one user.
    max_per_ip: int = 200
    max_per_user: int = 20


class Connection:
    """A connected client: its user (if logged in), its rooms and its outbox."""

    # Thousands sit idle at once: no per-instance __dict__, and the deques that
    # only a client that errs or publishes needs are made on first use.
    __slots__ = (
        "_allowance",
        "_closing",
        "_drained",
        "_errors",
        "_flush_scheduled",
        "_limits",
        "_outbox",
        "_pipeline",
        "_queued",
        "_rooms",
        "_subscribed",
        "_wire",
        "_ws",
        "request_id",
        "session_key",
        "user",
    )

    def __init__(
        self,
        websocket: WebSocket,
        wire: DirectWire,
        rooms: RoomService,
        *,
        user: UserRef | None,
        session_key: str | None,
        limits: ConnectionLimits,
        request_id: str = "",
    ) -> None:
        self.user = user
        self.session_key = session_key
        #: The handshake's request id; every request the client sends is logged with it.
        self.request_id = request_id
        self._ws = websocket
        self._wire = wire
        self._rooms = rooms
        self._limits = limits
        self._subscribed: set[str] = set()
        self._outbox: list[bytes] = []
        self._queued = 0
        self._flush_scheduled = False
        self._drained: asyncio.Event | None = None
        self._errors: deque[float] | None = None
        self._closing: tuple[int, str] | None = None
        # Publishes are stored while the next requests are read: the store
        # commits what queues up together, so one busy client is not held to one
        # commit per message. Acks still come in order (the store keeps it).
        self._pipeline: deque[asyncio.Task[None]] | None = None
        # (requests left, when last counted): a token bucket made on the first request.
        self._allowance: tuple[float, float] | None = None
        wire.on_writable(self._schedule_flush)

    # -- the Member side: frames from rooms ---------------------------------------------

    def deliver(self, frame: bytes) -> None:
        if self._closing is not None:
            return
        self._outbox.append(frame)
        self._queued += len(frame)
        if self._queued + self._wire.buffered > self._limits.max_queued_bytes:
            self.overflow()
            return
        self._schedule_flush()

    def deliver_batch(self, batch: Batch) -> None:
        if self._closing is not None:
            return
        wire = self._wire
        if not self._outbox:
            framed = batch.framed
            if framed is None:
                framed = batch.framed = text_frame(batch.payload)
            buffered = wire.offer(framed)
            if buffered > self._limits.max_queued_bytes:
                self.overflow()
            if buffered >= 0:
                return
        # Behind other output, or the socket is backed up: queue, in order.
        self._outbox.extend(batch.frames)
        self._queued += batch.size
        if self._queued + wire.buffered > self._limits.max_queued_bytes:
            self.overflow()
            return
        self._schedule_flush()

    def overflow(self) -> None:
        self.close(CloseCode.TOO_SLOW, "too slow: the outgoing queue overflowed")

    async def drained(self) -> None:
        while self._closing is None and not self._caught_up:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    @property
    def _caught_up(self) -> bool:
        # The socket's own flow control says when its buffer is low again
        # (resume_writing); between its marks there is no signal to wait for.
        return self._queued <= self._limits.max_queued_bytes // 4 and self._wire.writable

    def close(self, code: int, reason: str) -> None:
        """Close the connection now; frames still queued are dropped."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._outbox.clear()
        self._queued = 0
        if self._drained is not None:
            self._drained.set()
        # The close frame goes after what the socket already holds; a peer that
        # never reads it is cut off after a timeout. The reader then sees the end.
        self._wire.abort(code, reason)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the outbox as few frames, if the socket takes them."""
        self._flush_scheduled = False
        if self._closing is not None:
            return
        wire = self._wire
        # A backed-up socket calls _schedule_flush again when it drains.
        if self._outbox and wire.writable:
            outbox, self._outbox = self._outbox, []
            self._queued = 0
            max_frame = self._limits.max_frame_bytes
            start, size = 0, 0
            for index, frame in enumerate(outbox):
                if size and size + len(frame) > max_frame:
                    wire.write(text_frame(b"\n".join(outbox[start:index])))
                    start, size = index, 0
                size += len(frame) + 1
            wire.write(text_frame(b"\n".join(outbox[start:])))
            if wire.buffered > self._limits.max_queued_bytes:
                self.overflow()
                return
        if self._drained is not None and self._caught_up:
            self._drained.set()

    # -- running -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until the client goes or the connection is closed."""
        try:
            await self._read()
        finally:
            if self._pipeline:  # None or empty: nothing in flight
                # Publishes already handed to the store finish; their acks may not
                # reach the client, which resends with the same nonce.
                await asyncio.wait(self._pipeline, timeout=_PIPELINE_DRAIN_TIMEOUT)
                for task in self._pipeline:
                    task.cancel()
            self._closing = self._closing or (CloseCode.NORMAL, "")
            self._wire.on_writable(None)
            await self._leave_all()

    async def _read(self) -> None:
        receive = self._ws.receive
        while self._closing is None:
            log_requests = ACCESS.isEnabledFor(logging.INFO)
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            data: Any = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if (refusal := self._too_many(data)) is not None:
                self._fail(None, refusal)
                continue
            for request in decode_requests(data):
                if self._closing is not None:
                    return
                if log_requests:
                    self._log(request)
                if isinstance(request, Publish):
                    # Publishes have their own limit, per user and room (RoomService).
                    await self._pipelined(request)
                elif (slow_down := self._spend()) is not None:
                    self._fail(request.id, slow_down)
                else:
                    await self._handle(request)

    def _too_many(self, data: str | bytes) -> TooManyRequests | None:
        """Why this frame is refused whole (it holds too many requests), or None."""
        limit = self._limits.max_requests_per_frame
        # Counted before decoding: a frame of thousands of requests costs nothing more.
        lines = (data.count("\n") if isinstance(data, str) else data.count(b"\n")) + 1
        if lines > limit:
            return TooManyRequests(f"at most {limit} requests per frame; none was handled")
        return None

    def _spend(self) -> TooManyRequests | None:
        """Take one request from the connection's budget; the error when it is spent."""
        rate = self._limits.requests_per_second
        if rate is None:
            return None
        now = time.monotonic()
        burst = 2 * rate
        left, at = self._allowance or (burst, now)
        left = min(burst, left + (now - at) * rate)
        if left < 1:
            self._allowance = (left, now)
            retry_after = (1 - left) / rate
            return TooManyRequests(
                f"at most {rate:g} requests per second; retry in {retry_after:.1f} s",
                details={"retry_after": round(retry_after, 3)},
            )
        self._allowance = (left - 1, now)
        return None

    def _log(self, request: Request | RequestError) -> None:
        if isinstance(request, RequestError):
            kind, room, frame_id = "invalid", None, request.id
        else:
            kind, room, frame_id = _TYPES[type(request)], getattr(request, "room", None), request.id
        user = self.user
        log_ws(kind, room, user.id if user else None, self.request_id, frame_id)

    async def _pipelined(self, request: Publish) -> None:
        """Check a publish now, in order; store and ack it in the background."""
        pipeline = self._pipeline
        if pipeline is None:
            pipeline = self._pipeline = deque()
        while pipeline and pipeline[0].done():
            pipeline.popleft()
        if len(pipeline) >= self._limits.max_pipelined:
            await asyncio.wait({pipeline.popleft()})
        try:
            outgoing = await self._rooms.prepare(
                self.user, request.room, request.text, nonce=request.nonce
            )
        except StreamchatError as exc:
            self._fail(request.id, exc)
            return
        except Exception:
            log.exception("checking a publish failed")
            self._fail(request.id, Unavailable("internal error; try again"))
            return
        # Tasks start in the order they are created, and a send hands its message
        # to the store before it first waits: the client's order is the room's.
        task = asyncio.create_task(self._send(request.id, outgoing), name="ws-publish")
        pipeline.append(task)

    async def _send(self, request_id: int | str | None, outgoing: Outgoing) -> None:
        try:
            posted = await self._rooms.send(outgoing)
        except PubSubError as exc:
            log.warning("publish failed: %s", exc)
            self._fail(request_id, Unavailable("chat storage is unavailable; try again"))
        except Exception:
            log.exception("publish failed")
            self._fail(request_id, Unavailable("internal error; try again"))
        else:
            self.deliver(
                encode(
                    Ack(
                        id=request_id,
                        room=posted.room,
                        seq=posted.seq,
                        message_id=posted.message_id,
                    )
                )
            )

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
                frames = await rooms.history(room, before=before, limit=limit)
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
        if isinstance(error, Unavailable):
            # The server's own failure: never held against the client.
            return
        now = time.monotonic()
        errors = self._errors
        if errors is None:
            errors = self._errors = deque()
        errors.append(now)
        while errors and errors[0] <= now - self._limits.error_window:
            errors.popleft()
        if len(errors) > self._limits.max_errors:
            self.close(CloseCode.POLICY, "too many errors")

    async def _leave_all(self) -> None:
        rooms, self._subscribed = self._subscribed, set()
        for room in rooms:
            try:
                await self._rooms.unsubscribe(self, room, self.user)
            except Exception:
                log.exception("leaving room %s failed", room)
