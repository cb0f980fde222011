"""A Python client of the streamchat room protocol (see docs/protocol.md).

::

    token = await login("http://127.0.0.1:8000", "1001", login="viewer")
    async with ChatClient.connect("http://127.0.0.1:8000", session=token) as chat:
        await chat.subscribe("sablesignal")
        await chat.publish("sablesignal", "hello")
        async for event in chat.events():
            ...

Requests are numbered ``1, 2, 3...`` per connection and each awaits the reply
carrying its ``id``. Everything else the server sends (``message``, ``join``,
``leave``, ``event``, and an ``error`` that answers no pending request) goes to
one bounded queue, read with :meth:`ChatClient.events` or
:meth:`ChatClient.next_event`.

Exceptions::

    ChatError                       the server refused: an ``error`` frame, or an HTTP error
    └── InvalidReply                a reply that is not valid JSON, or not the expected type
    TimeoutError                    no reply within ``request_timeout`` seconds
    websockets.ConnectionClosed     the connection ended: every pending and later request
    ├── ConnectionClosedOK          (1000/1001, e.g. after ``close()``)
    └── ConnectionClosedError       (anything else: 4001 session ended, 4008 too slow, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
from msgspec import Struct
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.typing import Origin

from streamchat.protocol import (
    Ack,
    ErrorFrame,
    EventFrame,
    History,
    HistoryReply,
    Join,
    Leave,
    Moderate,
    Moderated,
    ModerationAction,
    ModerationNotice,
    Ping,
    Pong,
    Presence,
    PresenceReply,
    Publish,
    Request,
    RoomState,
    StreamerChange,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Unwatch,
    Unwatched,
    UserRef,
    Watch,
    Watching,
    encode,
)

__all__ = [
    "SESSION_COOKIE",
    "ChatClient",
    "ChatError",
    "Event",
    "EventsDropped",
    "InvalidReply",
    "Message",
    "Reply",
    "login",
    "logout",
    "websocket_url",
]

log = logging.getLogger("streamchat.client")

SESSION_COOKIE: Final = "streamchat_session"
DEFAULT_REQUEST_TIMEOUT: Final = 10.0
DEFAULT_MAX_EVENTS: Final = 10_000
#: The server batches frames up to 64 KiB, but one ``history`` reply of 100 long
#: messages can be larger; leave ample room.
DEFAULT_MAX_SIZE: Final = 4 << 20


class ChatError(Exception):
    """The server refused a request: it answered with an ``error`` frame or HTTP error."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        request_id: int | str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.request_id = request_id
        #: The error's particulars, e.g. ``{"retry_after": 1.5}`` for ``rate_limited``.
        self.details = details


class InvalidReply(ChatError):
    """A reply the client could not decode, or of another type than the request calls for."""

    def __init__(self, reason: str, *, request_id: int | str | None = None) -> None:
        super().__init__("invalid_reply", reason, request_id=request_id)


class Message(Struct, tag="message", tag_field="type", frozen=True):
    """A chat message, as delivered live, replayed after ``since``, or in ``history``.

    A message a moderator deleted is a tombstone: ``deleted`` is true, and only ``room``
    and ``seq`` are meaningful (``user`` is None, ``text`` empty).
    """

    room: str
    seq: int
    message_id: str = ""
    user: UserRef | None = None
    text: str = ""
    #: When the server accepted it, in milliseconds since the Unix epoch.
    ts: int = 0
    deleted: bool = False


class EventsDropped(Struct, frozen=True):
    """Not a server frame: marks where events were dropped because the queue was full.

    Everything before it arrived complete; some events right after it were lost.
    To fill the gap, subscribe again with ``since`` set to the last ``seq`` handled.
    """


#: What :meth:`ChatClient.events` yields, in arrival order.
Event = (
    Message
    | Join
    | Leave
    | EventFrame
    | StreamerChange
    | ModerationNotice
    | RoomState
    | ErrorFrame
    | EventsDropped
)
#: What a request resolves to (an ``error`` is raised as :class:`ChatError`).
Reply = (
    Subscribed
    | Unsubscribed
    | Ack
    | HistoryReply
    | PresenceReply
    | Pong
    | Watching
    | Unwatched
    | Moderated
    | ErrorFrame
)

_ServerFrame = (
    Reply | Message | Join | Leave | EventFrame | StreamerChange | ModerationNotice | RoomState
)
_EVENT_TYPES: Final = (
    Message,
    Join,
    Leave,
    EventFrame,
    StreamerChange,
    ModerationNotice,
    RoomState,
)
_frame_decoder: Final[msgspec.json.Decoder[_ServerFrame]] = msgspec.json.Decoder(_ServerFrame)
_message_decoder: Final = msgspec.json.Decoder(Message)
_any_decoder: Final = msgspec.json.Decoder()

_R = TypeVar(
    "_R",
    Subscribed,
    Unsubscribed,
    Ack,
    HistoryReply,
    PresenceReply,
    Pong,
    Watching,
    Unwatched,
    Moderated,
)


class ChatClient:
    """One WebSocket connection to a streamchat server.

    Create it with :meth:`connect` (an ``async with`` block) or :meth:`open` and
    :meth:`close`. Requests may run concurrently from several tasks.

    Events are buffered in a queue of at most ``max_events``, so a consumer that
    stops reading costs bounded memory (and replies, which never queue, keep
    working). When the queue is full, arriving events are dropped: an
    :class:`EventsDropped` marker takes the place of each run of dropped events,
    :attr:`dropped_events` counts them and :attr:`overflowed` turns true. A
    consumer that sees the marker recovers by subscribing again with ``since``
    set to the last ``seq`` it handled (and skipping ``seq`` it already has).
    """

    def __init__(
        self,
        websocket: ClientConnection,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        """Wrap an open connection; prefer :meth:`connect` or :meth:`open`."""
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._ws = websocket
        self._request_timeout = request_timeout
        self._max_events = max_events
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        # Unbounded as a queue so the end-of-stream marker (None) always fits;
        # the bound on events is enforced in _enqueue.
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed: ConnectionClosed | None = None
        self.dropped_events = 0
        self._dropping = False
        self._reader = asyncio.create_task(self._read(), name="streamchat-client-reader")

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        session: str | None = None,
        *,
        origin: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_events: int = DEFAULT_MAX_EVENTS,
        open_timeout: float | None = 10.0,
        max_size: int | None = DEFAULT_MAX_SIZE,
        compression: str | None = "deflate",
    ) -> ChatClient:
        """Connect to ``url`` and return the open client; :meth:`close` it when done.

        ``url`` is the server's base URL (``http://host:port``, ``/ws`` is
        appended) or the WebSocket endpoint itself (``ws://host:port/ws``).
        ``session`` is the ``streamchat_session`` cookie from :func:`login`;
        without it the connection is anonymous (it may read, not publish).
        ``origin`` sets the ``Origin`` header, as a browser would.
        """
        if max_events < 1:  # before a connection is opened for nothing
            raise ValueError("max_events must be at least 1")
        headers = {"Cookie": f"{SESSION_COOKIE}={session}"} if session else None
        websocket = await ws_connect(
            websocket_url(url),
            additional_headers=headers,
            origin=Origin(origin) if origin is not None else None,
            open_timeout=open_timeout,
            max_size=max_size,
            compression=compression,
        )
        return cls(websocket, request_timeout=request_timeout, max_events=max_events)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str,
        session: str | None = None,
        *,
        origin: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_events: int = DEFAULT_MAX_EVENTS,
        open_timeout: float | None = 10.0,
        max_size: int | None = DEFAULT_MAX_SIZE,
        compression: str | None = "deflate",
    ) -> AsyncIterator[ChatClient]:
        """``async with ChatClient.connect(url, session) as chat:`` — see :meth:`open`."""
        client = await cls.open(
            url,
            session,
            origin=origin,
            request_timeout=request_timeout,
            max_events=max_events,
            open_timeout=open_timeout,
            max_size=max_size,
            compression=compression,
        )
        try:
            yield client
        finally:
            await client.close()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait until the reader has finished; idempotent."""
        await self._ws.close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection has ended, whoever ended it."""
        # asyncio.wait, not await: cancelling the caller must not cancel the reader.
        await asyncio.wait({self._reader})

    @property
    def closed(self) -> bool:
        """True once the connection has ended (queued events may still be read)."""
        return self._closed is not None

    @property
    def close_code(self) -> int | None:
        """The close code (4001 session ended, 4008 too slow, 1006 lost...); None while open."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    @property
    def overflowed(self) -> bool:
        """True once any event was dropped because the events queue was full."""
        return self.dropped_events > 0

    # -- requests ----------------------------------------------------------------------

    async def subscribe(
        self, room: str, since: int | None = None, epoch: str | None = None
    ) -> Subscribed:
        """Receive ``room``'s messages; with ``since``, first every message after that seq.

        The replayed messages arrive as events, after this reply and before any
        live one. ``recovered`` is false when ``since`` could not be honoured
        (history trimmed, or ``epoch`` no longer current).
        """
        return await self._call(Subscribe(room=room, since=since, epoch=epoch), Subscribed)

    async def unsubscribe(self, room: str) -> Unsubscribed:
        return await self._call(Unsubscribe(room=room), Unsubscribed)

    async def publish(self, room: str, text: str, nonce: str | None = None) -> Ack:
        """Post ``text``; the ack comes once it is stored.

        The same ``nonce`` (up to 64 characters) from the same user returns the
        original ack and stores nothing new, so a publish whose ack was lost to
        a disconnection can be retried safely.
        """
        return await self._call(Publish(room=room, text=text, nonce=nonce), Ack)

    async def history(self, room: str, before: int | None = None, limit: int = 50) -> list[Message]:
        """Up to ``limit`` messages (at most 100) before seq ``before``, oldest first."""
        reply = await self._call(History(room=room, before=before, limit=limit), HistoryReply)
        try:
            found = [_message_decoder.decode(raw) for raw in reply.messages]
        except msgspec.ValidationError as exc:
            raise InvalidReply(f"history holds an invalid message: {exc}") from exc
        for message in found:
            if not _whole(message):
                raise InvalidReply(f"history holds an invalid message: {message!r}")
        return found

    async def presence(self, room: str) -> PresenceReply:
        """The logged-in users subscribed to ``room``, on every server process."""
        return await self._call(Presence(room=room), PresenceReply)

    async def ping(self) -> Pong:
        return await self._call(Ping(), Pong)

    async def watch_streamers(self) -> Watching:
        """Receive every change of the streamer directory as :class:`StreamerChange` events."""
        return await self._call(Watch(feed="streamers"), Watching)

    async def unwatch_streamers(self) -> Unwatched:
        return await self._call(Unwatch(feed="streamers"), Unwatched)

    async def moderate(self, room: str, action: ModerationAction, **args: Any) -> Moderated:
        """Take a moderation action in ``room``: ``ban`` (``user``, ``reason``), ``timeout``
        (``user``, ``seconds``), ``delete`` (``seq``), ``slow`` (``seconds``)... (see
        docs/protocol.md)."""
        return await self._call(Moderate(room=room, action=action, **args), Moderated)

    async def request(self, frame: Mapping[str, Any]) -> Reply:
        """Send any request object (its ``id`` is replaced) and return the typed reply.

        For testing a server with frames the typed methods cannot produce, such
        as a ``publish`` without ``text``. An ``error`` reply raises :class:`ChatError`.
        """
        request_id = next(self._ids)
        reply = await self._exchange(request_id, encode({**frame, "id": request_id}))
        return _raise_if_error(reply)

    async def send_raw(self, data: str | bytes) -> None:
        """Send one text frame exactly as given, without waiting for anything.

        Replies to it are not matched: an ``error`` arrives as an event. Use
        string ids (or none) in raw frames, since numeric ids belong to the client.
        """
        if self._closed is not None:
            raise self._closed
        await self._ws.send(data, text=True)

    async def _call(self, request: Request, expected: type[_R]) -> _R:
        request_id = next(self._ids)
        data = encode(msgspec.structs.replace(request, id=request_id))
        reply = _raise_if_error(await self._exchange(request_id, data))
        if not isinstance(reply, expected):
            raise InvalidReply(
                f"expected {expected.__name__} to request {request_id}, got {type(reply).__name__}",
                request_id=request_id,
            )
        return reply

    async def _exchange(self, request_id: int, data: bytes) -> Reply:
        if self._closed is not None:
            raise self._closed
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            # Outside the timeout: cancelling a send can break the connection, and
            # a send only waits while the server is not reading, which keepalive
            # pings bound anyway.
            await self._ws.send(data, text=True)
            try:
                async with asyncio.timeout(self._request_timeout):
                    return await future
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to request {request_id} within {self._request_timeout:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)

    # -- events ------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event in arrival order; ends once the connection has closed and they are read."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # so every other reader ends too
                return
            yield event

    # A timeout parameter (not just asyncio.timeout around the call) because waiting
    # a bounded time for the next event is what nearly every caller wants.
    async def next_event(self, timeout: float | None = 5.0) -> Event:  # noqa: ASYNC109
        """The next event; ``TimeoutError`` after ``timeout`` s, ``ConnectionClosed`` at the end."""
        async with asyncio.timeout(timeout):
            event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)
            assert self._closed is not None
            raise self._closed
        return event

    def _enqueue(self, event: Event) -> None:
        if self._events.qsize() >= self._max_events:
            if not self._dropping:
                # One marker past the bound, where the gap starts.
                self._dropping = True
                self._events.put_nowait(EventsDropped())
            self.dropped_events += 1
            if self.dropped_events & (self.dropped_events - 1) == 0:  # 1, 2, 4, 8...
                log.warning(
                    "events queue full (%d): dropped %d event(s) so far",
                    self._max_events,
                    self.dropped_events,
                )
            return
        self._dropping = False
        self._events.put_nowait(event)

    # -- reading -----------------------------------------------------------------------

    async def _read(self) -> None:
        closed: ConnectionClosed | None = None
        try:
            while True:
                data = await self._ws.recv(decode=False)
                for line in data.split(b"\n"):
                    if line.strip():
                        self._receive(line)
        except ConnectionClosed as exc:
            closed = exc
        except Exception:
            log.exception("streamchat client reader failed; closing the connection")
            await self._ws.close(1011, "client error")
            closed = self._ws.protocol.close_exc
        finally:
            self._finish(closed or ConnectionClosedError(None, None))

    def _finish(self, closed: ConnectionClosed) -> None:
        self._closed = closed
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(closed)
        self._events.put_nowait(None)

    def _receive(self, line: bytes) -> None:
        try:
            frame = _frame_decoder.decode(line)
        except msgspec.DecodeError as exc:  # ValidationError included
            self._undecodable(line, exc)
            return
        if isinstance(frame, _EVENT_TYPES):
            if isinstance(frame, Message) and not _whole(frame):
                log.warning("a message with fields missing from the server: %.200r", line)
                return
            self._enqueue(frame)
            return
        future = self._pending.pop(frame.id, None) if isinstance(frame.id, int) else None
        if future is None:
            if isinstance(frame, ErrorFrame):
                self._enqueue(frame)
            else:
                log.debug("reply to no pending request (timed out?): %.200r", line)
            return
        if not future.done():
            future.set_result(frame)

    def _undecodable(self, line: bytes, exc: msgspec.DecodeError) -> None:
        log.warning("undecodable frame from the server (%s): %.200r", exc, line)
        try:
            raw = _any_decoder.decode(line)
        except msgspec.DecodeError:
            return
        request_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(
                    InvalidReply(f"undecodable reply: {exc}", request_id=request_id)
                )


def _whole(message: Message) -> bool:
    """A message is a tombstone, or has everything a message has."""
    return message.deleted or (message.user is not None and bool(message.message_id))


def _raise_if_error(reply: Reply) -> Reply:
    if isinstance(reply, ErrorFrame):
        raise ChatError(reply.code, reply.reason, request_id=reply.id, details=reply.details)
    return reply


# -- URLs and HTTP ---------------------------------------------------------------------

_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def websocket_url(url: str) -> str:
    """The WebSocket endpoint for a base URL (``http://h:p`` -> ``ws://h:p/ws``).

    A ``ws://`` or ``wss://`` URL with a path is taken as the endpoint itself.
    """
    parts = urlsplit(url)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    path = parts.path
    if parts.scheme.lower() in ("http", "https") or path in ("", "/"):
        path = path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _http_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = _HTTP_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    path = parts.path.rstrip("/")
    if parts.scheme.lower() in ("ws", "wss") and path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _http_error(response: httpx.Response) -> ChatError:
    """The ``{"error": {"code", "message"}}`` body of a failed response, as a ChatError."""
    try:
        error = response.json()["error"]
        return ChatError(str(error["code"]), str(error["message"]), details=error.get("details"))
    except (ValueError, KeyError, TypeError):
        return ChatError(f"http_{response.status_code}", response.reason_phrase)


def _session_cookie(response: httpx.Response) -> str | None:
    # Parsed from the header rather than a cookie jar: jars apply domain rules
    # that treat 127.0.0.1 and localhost inconsistently.
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header)
        except CookieError:
            continue
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


async def login(
    base_url: str,
    twitch_id: str,
    login: str | None = None,
    display_name: str | None = None,
    *,
    http_timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Register the user if needed, log in (``dev`` auth mode) and return the session token.

    Registration is idempotent: a known ``twitch_id`` keeps its login and
    display name. HTTP errors raise :class:`ChatError` with the server's code.
    """
    body: dict[str, str] = {"twitch_id": twitch_id}
    if login is not None:
        body["login"] = login
    if display_name is not None:
        body["display_name"] = display_name
    async with httpx.AsyncClient(
        base_url=_http_base(base_url), timeout=http_timeout, transport=transport
    ) as http:
        registered = await http.post("/api/users", json=body)
        if registered.status_code not in (200, 201):
            raise _http_error(registered)
        response = await http.post("/api/login", json={"twitch_id": twitch_id})
        if response.status_code != 200:
            raise _http_error(response)
    token = _session_cookie(response)
    if token is None:
        raise ChatError("no_session", "the server set no session cookie")
    return token


async def logout(
    base_url: str,
    session: str,
    *,
    http_timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """End ``session`` on the server; its WebSockets everywhere close with 4001."""
    async with httpx.AsyncClient(
        base_url=_http_base(base_url), timeout=http_timeout, transport=transport
    ) as http:
        response = await http.post("/api/logout", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    if response.status_code >= 400:
        raise _http_error(response)
