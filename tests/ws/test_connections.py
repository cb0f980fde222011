"""Connection life: sessions that end, clients that stop reading, peers that vanish."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import timedelta

import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect

from streamchat.client import ChatClient, logout
from streamchat.protocol import EventFrame
from streamchat.store.models import Session, utcnow
from streamchat.store.sessions import session_key
from tests.helpers import wait_for
from tests.ws.conftest import ROOM, LiveServer, ServerFactory, close_code


async def test_logout_closes_that_sessions_sockets_with_4001(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    other_session = await server.login("1001", "alice")
    async with (
        server.connect(session) as first,
        server.connect(session) as second,
        server.connect(other_session) as same_user_other_session,
        server.connect() as anonymous,
    ):
        await first.subscribe(ROOM)
        await logout(server.url, session)
        for chat in (first, second):
            async with asyncio.timeout(5):
                await chat.wait_closed()
            assert chat.close_code == 4001
        for chat in (same_user_other_session, anonymous):
            await chat.ping()
            assert not chat.closed


async def test_expired_sessions_are_closed_by_the_recheck(server_factory: ServerFactory) -> None:
    async with server_factory(session_recheck_seconds=0.2) as server:
        session = await server.login("1001", "alice")
        async with server.connect(session) as chat:
            await chat.ping()
            async with server.services.db.session() as db:
                await db.execute(
                    update(Session)
                    .where(Session.token_hash == session_key(session))
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )
            async with asyncio.timeout(5):
                await chat.wait_closed()
            assert chat.close_code == 4001


async def test_a_client_that_stops_reading_is_dropped(server_factory: ServerFactory) -> None:
    async with server_factory(ws_max_queued_bytes=256 << 10) as server:
        registry = server.services.connections
        rooms = server.services.rooms
        # A tiny receive buffer so the kernel absorbs little of the backlog for it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        async with (
            connect(server.url.replace("http", "ws", 1) + "/ws", sock=sock) as slow,
            server.connect() as healthy,
        ):
            await slow.send('{"type":"subscribe","id":1,"room":"pixelpaladin"}')
            await slow.recv()
            await healthy.subscribe(ROOM)
            assert len(registry) == 2
            slow.transport.pause_reading()  # stop reading, like a frozen client

            # Room events skip the store, so megabytes can be sent quickly:
            # enough to fill the socket buffers and then the slow client's outbox.
            payload = {"blob": "x" * 16_000}
            sent = 0
            while rooms.members_of(ROOM) == 2 and sent < 2_000:
                # Bursts well below the outbox bound: a reading client keeps up with them.
                await asyncio.gather(*(rooms.announce(ROOM, "bulk", payload) for _ in range(4)))
                sent += 4
                await asyncio.sleep(0.005)
            # It left the room at once (its close frame waits for it to read).
            await wait_for(lambda: rooms.members_of(ROOM) == 1)

            # The healthy reader got every event, in order, undisturbed.
            received = 0
            async with asyncio.timeout(20):
                while received < sent:
                    event = await healthy.next_event(10)
                    assert isinstance(event, EventFrame)
                    received += 1
            assert not healthy.closed

            # The slow one finds a 4008 close once it reads again.
            slow.transport.resume_reading()
            assert await close_code(slow) == 4008
            await wait_for(lambda: len(registry) == 1)


async def test_silent_peers_are_dropped_by_the_heartbeat(server_factory: ServerFactory) -> None:
    async with server_factory(ws_ping_interval=0.2, ws_ping_timeout=0.2) as server:
        registry = server.services.connections
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection(host, port)
        # A WebSocket handshake by hand, then silence: no pong will ever come.
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        status = await reader.readline()
        assert b"101" in status
        await wait_for(lambda: len(registry) == 1)
        await wait_for(lambda: len(registry) == 0, within=5)
        writer.close()


async def test_a_living_client_survives_the_heartbeat(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The client logs every frame it receives; before it connects, or it won't.
    caplog.set_level(logging.DEBUG, logger="websockets.client")

    def pings() -> int:
        return sum(r.getMessage().startswith("< PING") for r in caplog.records)

    async with (
        server_factory(ws_ping_interval=0.1, ws_ping_timeout=0.5) as server,
        ChatClient.connect(server.url) as chat,
    ):
        # The server sends each ping once the last one's pong came back: pings for longer
        # than the ping timeout mean it took every pong, and the client is still there.
        await wait_for(lambda: pings() >= 7)
        await chat.ping()
        assert not chat.closed
