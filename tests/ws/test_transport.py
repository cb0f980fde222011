"""The direct wire to a WebSocket's socket, and the light queue and flag under it.

A server protocol is connected to one end of a real socket pair; a websockets
sans-I/O client speaks RFC 6455 at the other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from streamchat.ws.transport import (
    WIRE_EXTENSION,
    DirectWire,
    StreamchatWebSocketProtocol,
    _Flag,
    _Inbox,
    text_frame,
)
from tests.helpers import wait_for


class Peer:
    """The client end: writes what its protocol wants sent, parses what arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def next_event(self, within: float = 5.0) -> Frame | Response | None:
        """The next frame or response, or None once the server closed the connection."""
        async with asyncio.timeout(within):
            while True:
                events = self.protocol.events_received()
                if events:
                    event = events[0]
                    # Hand back the others on the next calls.
                    self.protocol.events.extend(events[1:])  # type: ignore[attr-defined]
                    assert isinstance(event, Frame | Response)
                    return event
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.protocol.receive_data(data)


class Served:
    def __init__(self, protocol: StreamchatWebSocketProtocol, peer: Peer) -> None:
        self.protocol = protocol
        self.peer = peer
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def wire(self) -> DirectWire:
        return self.protocol.wire


@contextlib.asynccontextmanager
async def served(*, reading: bool = True) -> AsyncIterator[Served]:
    """A connection through the handshake, its app waiting on ``receive`` (or, not
    ``reading``, busy with something else for ever)."""
    holder: list[Served] = []
    accepted = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert isinstance(scope["extensions"][WIRE_EXTENSION], DirectWire)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        accepted.set()
        if not reading:
            await asyncio.Event().wait()
        while True:
            event = await receive()
            await holder[0].received.put(event)
            if event["type"] == "websocket.disconnect":
                return

    config = Config(app=app, ws="websockets-sansio", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = StreamchatWebSocketProtocol(config, ServerState(), {}, _loop=loop)
    server_sock, client_sock = socket.socketpair()
    await loop.connect_accepted_socket(lambda: protocol, server_sock)
    reader, writer = await asyncio.open_connection(sock=client_sock)
    peer = Peer(reader, writer)
    holder.append(Served(protocol, peer))
    try:
        peer.protocol.send_request(peer.protocol.connect())
        await peer.flush()
        response = await peer.next_event()
        assert isinstance(response, Response)
        assert response.status_code == 101
        await asyncio.wait_for(accepted.wait(), 5)
        yield holder[0]
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        protocol.transport.abort()
        await asyncio.sleep(0)


# -- the wire --


async def test_offer_writes_a_ready_frame_to_the_socket() -> None:
    async with served() as conn:
        assert conn.wire.open
        assert conn.wire.writable
        assert conn.wire.offer(text_frame(b'{"type":"message"}')) == 0  # the kernel took it
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.opcode is Opcode.TEXT
        assert frame.data == b'{"type":"message"}'


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
async def test_text_frames_of_every_length_encoding(size: int) -> None:
    payload = b"x" * size
    async with served() as conn:
        conn.wire.write(text_frame(payload))
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.data == payload


async def test_offer_refuses_while_the_socket_is_backed_up() -> None:
    async with served() as conn:
        conn.protocol.pause_writing()
        assert not conn.wire.writable
        assert conn.wire.offer(text_frame(b"held")) == -1
        woken: list[bool] = []
        conn.wire.on_writable(lambda: woken.append(True))
        conn.protocol.resume_writing()
        assert woken == [True]
        assert conn.wire.offer(text_frame(b"now")) == 0
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.data == b"now"  # "held" was never written


async def test_offer_reports_what_the_kernel_did_not_take() -> None:
    async with served() as conn:
        big = text_frame(b"y" * 4_000_000)
        buffered = conn.wire.offer(big)
        # The peer is not reading: some of it waits in the transport's buffer.
        assert buffered > 0
        assert conn.wire.buffered == buffered


async def test_abort_sends_a_close_frame_and_tells_the_app() -> None:
    async with served() as conn:
        conn.wire.abort(1008, "too many errors")
        assert not conn.wire.open
        assert conn.wire.offer(text_frame(b"after")) == -1
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.opcode is Opcode.CLOSE
        close = Close.parse(frame.data)
        assert (close.code, close.reason) == (1008, "too many errors")
        event = await asyncio.wait_for(conn.received.get(), 5)
        assert event == {"type": "websocket.disconnect", "code": 1008, "reason": "too many errors"}
        # A second abort changes nothing.
        conn.wire.abort(1011, "again")
        assert conn.received.empty()


async def test_abort_drops_a_peer_that_never_answers_the_close() -> None:
    async with served() as conn:
        conn.protocol.close_timeout = 0.2
        conn.wire.abort(1008, "bye")
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.opcode is Opcode.CLOSE
        # The peer says nothing: the server cuts the connection after close_timeout.
        assert await conn.peer.next_event(within=3) is None


async def test_abort_ends_at_once_when_the_peer_answers() -> None:
    async with served(reading=False) as conn:
        conn.protocol.close_timeout = 30  # the answer, not the timer, must end it
        # The app is busy and has not taken the peer's last message: reading is paused.
        conn.peer.protocol.send_text(b"unread")
        await conn.peer.flush()
        await wait_for(lambda: conn.protocol.read_paused, within=5)
        conn.wire.abort(1008, "bye")
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert frame.opcode is Opcode.CLOSE
        await conn.peer.flush()  # the client protocol queued its answering close
        assert await conn.peer.next_event(within=3) is None


async def test_a_text_frame_that_is_not_utf8_closes_with_1007() -> None:
    async with served() as conn:
        conn.peer.writer.write(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))  # masked, bad UTF-8
        frame = await conn.peer.next_event()
        assert isinstance(frame, Frame)
        assert Close.parse(frame.data).code == 1007
        event = await asyncio.wait_for(conn.received.get(), 5)
        assert event["type"] == "websocket.disconnect"
        assert event["code"] == 1007


async def test_the_handshake_headers_are_dropped_once_accepted() -> None:
    async with served() as conn:
        assert len(conn.protocol.request.headers) == 0
        assert len(conn.protocol.response.headers) == 0


# -- the inbox --


async def test_inbox_is_first_in_first_out() -> None:
    inbox = _Inbox()
    assert inbox.empty()
    for item in ("a", "b", "c"):
        inbox.put_nowait(item)
    assert inbox.qsize() == 3
    assert [await inbox.get() for _ in range(3)] == ["a", "b", "c"]
    assert inbox.empty()


async def test_inbox_one_item_wakes_one_getter() -> None:
    inbox = _Inbox()
    getters = [asyncio.create_task(inbox.get()) for _ in range(3)]
    await asyncio.sleep(0)
    inbox.put_nowait("one")
    await asyncio.sleep(0)
    done = [task for task in getters if task.done()]
    assert [task.result() for task in done] == ["one"]
    inbox.put_nowait("two")
    inbox.put_nowait("three")
    results = await asyncio.wait_for(asyncio.gather(*getters), 1)
    assert sorted(results) == ["one", "three", "two"]


async def test_inbox_cancelled_getter_passes_its_wakeup_on() -> None:
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("item")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "item"
    assert first.cancelled()
    assert inbox.empty()


async def test_inbox_cancelled_getter_leaves_no_waiter_behind() -> None:
    inbox = _Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert not inbox._waiters
    inbox.put_nowait("kept")
    assert await inbox.get() == "kept"


# -- the flag --


async def test_flag_wait_returns_at_once_when_set() -> None:
    flag = _Flag()
    flag.set()
    assert flag.is_set()
    assert await asyncio.wait_for(flag.wait(), 1) is True
    assert flag._waiters is None  # no allocation on the common path


async def test_flag_set_wakes_every_waiter_and_clear_holds_new_ones() -> None:
    flag = _Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)  # it runs up to its wait
    assert not late.done()
    flag.set()
    assert await asyncio.wait_for(late, 1) is True


async def test_flag_cancelled_waiter_is_removed() -> None:
    flag = _Flag()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not flag._waiters
    flag.set()
    assert flag.is_set()
