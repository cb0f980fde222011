"""One client's WebSocket: read its frames, answer its requests.

A frame is decoded into requests (``protocol.decode_requests``), each checked
against the connection's request budget and dispatched: publishes are checked
in order and stored in the background (acks still go out in order), every
other request is answered in turn. Replies, errors and room traffic all go
through the connection's :class:`~streamchat.ws.outbox.Outbox`, which owns the
flow control and the connection's lifecycle state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
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
    Moderate,
    Moderated,
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
    Unwatch,
    Unwatched,
    UserRef,
    Watch,
    Watching,
    decode_requests,
    encode,
    error_frame,
)
from streamchat.pubsub import PubSubError
from streamchat.rooms.service import Outgoing, RoomService
from streamchat.ws.outbox import CloseCode, ConnectionState, Outbox
from streamchat.ws.transport import DirectWire

__all__ = ["CloseCode", "Connection", "ConnectionLimits", "ConnectionState", "Moderator"]

#: Takes a ``moderate`` request for a user: what the action did, for the reply.
Moderator = Callable[[UserRef | None, Moderate], Awaitable[dict[str, Any]]]

log = logging.getLogger("streamchat.ws")

_PIPELINE_DRAIN_TIMEOUT = 10.0

#: Each request's ``type``, for the request log.
_TYPES: dict[type[Request], str] = {
    cls: str(cls.__struct_config__.tag)
    for cls in (Subscribe, Unsubscribe, Publish, History, Presence, Ping, Watch, Unwatch, Moderate)
}


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
        "_errors",
        "_limits",
        "_moderate",
        "_pipeline",
        "_rooms",
        "_subscribed",
        "_watching",
        "_ws",
        "outbox",
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
        moderate: Moderator | None = None,
    ) -> None:
        self.user = user
        self._moderate = moderate
        self.session_key = session_key
        #: The handshake's request id; every request the client sends is logged with it.
        self.request_id = request_id
        #: What waits to be written to the client; the member of its rooms.
        self.outbox = Outbox(
            wire,
            max_queued_bytes=limits.max_queued_bytes,
            max_frame_bytes=limits.max_frame_bytes,
        )
        self._ws = websocket
        self._rooms = rooms
        self._limits = limits
        self._subscribed: set[str] = set()
        self._watching = False
        self._errors: deque[float] | None = None
        # Publishes are stored while the next requests are read: the store
        # commits what queues up together, so one busy client is not held to one
        # commit per message. Acks still come in order (the store keeps it).
        self._pipeline: deque[asyncio.Task[None]] | None = None
        # (requests left, when last counted): a token bucket made on the first request.
        self._allowance: tuple[float, float] | None = None

    @property
    def state(self) -> ConnectionState:
        return self.outbox.state

    def close(self, code: int, reason: str) -> None:
        """Close the connection now; frames still waiting are dropped."""
        self.outbox.close(code, reason)

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
            self.outbox.finish()
            await self._leave_all()

    async def _read(self) -> None:
        receive = self._ws.receive
        outbox = self.outbox
        while outbox.state is ConnectionState.OPEN:
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
                if outbox.state is not ConnectionState.OPEN:
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
        previous = pipeline[-1] if pipeline else None
        task = asyncio.create_task(self._send(request.id, outgoing, previous), name="ws-publish")
        pipeline.append(task)

    async def _send(
        self,
        request_id: int | str | None,
        outgoing: Outgoing,
        previous: asyncio.Task[None] | None,
    ) -> None:
        failure: Unavailable | None = None
        try:
            posted = await self._rooms.send(outgoing)
        except PubSubError as exc:
            log.warning("publish failed: %s", exc)
            failure = Unavailable("chat storage is unavailable; try again")
        except Exception:
            log.exception("publish failed")
            failure = Unavailable("internal error; try again")
        # Stored in order, but the broker may confirm out of it: the answers go in the
        # order of the requests.
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        if failure is not None:
            self._fail(request_id, failure)
        else:
            self.outbox.deliver(
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
                self.outbox.deliver(reply)

    async def _answer(self, request: Request) -> bytes | None:
        rooms = self._rooms
        match request:
            case Subscribe(room=room, since=since, epoch=epoch, id=request_id):
                if room in self._subscribed:
                    # Resubscribing (e.g. with `since`): the user stays present throughout.
                    await rooms.resubscribe(
                        self.outbox, room, since=since, epoch=epoch, request_id=request_id
                    )
                    return None
                if len(self._subscribed) >= self._limits.max_subscriptions:
                    raise TooManySubscriptions(
                        f"at most {self._limits.max_subscriptions} rooms per connection"
                    )
                await rooms.subscribe(
                    self.outbox, room, self.user, since=since, epoch=epoch, request_id=request_id
                )
                self._subscribed.add(room)
                return None
            case Unsubscribe(room=room, id=request_id):
                if room in self._subscribed:
                    self._subscribed.discard(room)
                    await rooms.unsubscribe(self.outbox, room, self.user)
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
            case Watch(feed=feed, id=request_id):
                rooms.watch(self.outbox)
                self._watching = True
                return encode(Watching(id=request_id, feed=feed))
            case Unwatch(feed=feed, id=request_id):
                rooms.unwatch(self.outbox)
                self._watching = False
                return encode(Unwatched(id=request_id, feed=feed))
            case Moderate(room=room, action=action, id=request_id):
                if self._moderate is None:
                    raise Unavailable("moderation is not available on this server")
                done = await self._moderate(self.user, request)
                return encode(
                    Moderated(
                        id=request_id,
                        room=room,
                        action=action,
                        deleted=done.get("deleted"),
                        through=done.get("through"),
                    )
                )
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _fail(self, request_id: int | str | None, error: StreamchatError) -> None:
        self.outbox.deliver(error_frame(request_id, error))
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
        if self._watching:
            self._rooms.unwatch(self.outbox)
            self._watching = False
        rooms, self._subscribed = self._subscribed, set()
        for room in rooms:
            try:
                await self._rooms.unsubscribe(self.outbox, room, self.user)
            except Exception:
                log.exception("leaving room %s failed", room)
