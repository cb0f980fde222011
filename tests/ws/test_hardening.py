"""Defects an outside probe found: each fixed, each proven here against a real server."""

from __future__ import annotations

import json
import logging
import time

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamchat.client import ChatError
from tests.ws.conftest import ROOM, LiveServer, ServerFactory, close_code, ws_url
from tests.ws.test_cluster import cluster_database

__all__ = ["cluster_database"]


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":[]}', "unknown_type"),
        ('{"type":{}}', "unknown_type"),
        ('{"type":null,"id":5}', "invalid_frame"),
        ("[" * 1000 + "]" * 1000, "malformed_json"),
        ('{"type":"ping","x":' + "[" * 5000 + "]" * 5000 + "}", "malformed_json"),
        ('{"a":' * 600 + "1" + "}" * 600, "invalid_frame"),
        ('{"type":"history","room":"x","before":9223372036854775808}', "invalid_frame"),
        ('{"type":"history","room":"x","before":1e30}', "invalid_frame"),
        ('{"type":"history","room":"x","limit":99999999999999999999999}', "invalid_frame"),
    ],
)
async def test_hostile_frames_get_an_error_and_the_connection_lives(
    server: LiveServer, caplog: pytest.LogCaptureFixture, frame: str, code: str
) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(frame)
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error"
        assert reply["code"] == code
        await ws.send('{"type":"ping","id":1}')
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 1}
    assert _tracebacks(caplog) == []


async def test_invalid_utf8_closes_with_1007_quietly(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(b'{"type":"ping","x":"\xff\xfe"}', text=True)
        assert await close_code(ws) == 1007
    assert _tracebacks(caplog) == []


async def test_retries_of_a_nonce_cost_nothing(server: LiveServer) -> None:
    token = await server.login("1001", "alice")
    async with server.connect(token) as chat:
        acks = [await chat.publish(ROOM, "once", nonce="n-1") for _ in range(25)]
        assert {(a.seq, a.message_id) for a in acks} == {(acks[0].seq, acks[0].message_id)}
        # The one stored message counts; 19 more fit in Twitch's 20 per 30 s.
        fresh = [await chat.publish(ROOM, f"new {i}") for i in range(19)]
        assert [a.seq for a in fresh] == list(range(acks[0].seq + 1, acks[0].seq + 20))
        with pytest.raises(ChatError) as limited:
            await chat.publish(ROOM, "one too many")
        assert limited.value.code == "rate_limited"
        # And a retry of a stored message is still acknowledged while limited.
        again = await chat.publish(ROOM, "once", nonce="n-1")
        assert again.seq == acks[0].seq


async def _rename(server: LiveServer, table: str, to: str) -> None:
    async with server.services.db.session() as session:
        await session.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))


async def test_a_storage_outage_is_not_charged_to_the_client(server: LiveServer) -> None:
    token = await server.login("1001", "alice")
    async with server.connect(token) as chat:
        await chat.subscribe(ROOM)
        await _rename(server, "pubsub_messages", "pubsub_messages_away")
        try:
            for i in range(30):
                with pytest.raises(ChatError) as failed:
                    await chat.publish(ROOM, f"lost {i}", nonce=f"x{i}")
                assert failed.value.code == "unavailable"
            # 30 server failures: no 1008 "too many errors".
            assert not chat.closed
        finally:
            await _rename(server, "pubsub_messages_away", "pubsub_messages")
        # None of them was stored, so none counts toward the rate limit.
        acks = [await chat.publish(ROOM, f"after {i}", nonce=f"x{i}") for i in range(20)]
        assert [a.seq for a in acks] == list(range(1, 21))


async def test_a_database_outage_is_503_and_keeps_the_connection(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with server_factory() as server:
        token = await server.login("1001", "alice")
        cookies = {"streamchat_session": token}
        await _rename(server, "sessions", "sessions_away")
        try:
            async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as http:
                for _ in range(6):
                    response = await http.get("/api/me")
                    assert response.status_code == 503
                    assert response.json()["error"]["code"] == "unavailable"
                    assert response.headers.get("connection") != "close"
            # A handshake during the outage: 503 (retry), not 403 (a foreign origin).
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    ws_url(server), additional_headers={"cookie": f"streamchat_session={token}"}
                ):
                    pass
            assert refused.value.response.status_code == 503
        finally:
            await _rename(server, "sessions_away", "sessions")
        async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as http:
            assert (await http.get("/api/me")).status_code == 200
    assert [r for r in caplog.records if r.exc_info] == []


async def test_the_closed_socket_reports(server: LiveServer) -> None:
    """A server-side close is seen by the client as a close, not a hang."""
    async with connect(ws_url(server)) as ws:
        await ws.close()
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_deployments_sharing_a_redis_server_do_not_hear_each_other(
    server_factory: ServerFactory, redis_url: str, tmp_path: object
) -> None:
    token = "shared-redis-admin-token"
    async with (
        server_factory(broker_url=redis_url, admin_token=token) as ours,
        server_factory(
            broker_url=redis_url,
            admin_token=token,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/theirs.db",  # another deployment
        ) as theirs,
        ours.connect() as chat,
    ):
        await chat.subscribe(ROOM)
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http:
            sent = await http.post(f"{theirs.url}/api/admin/broadcast", json={"text": "theirs"})
            assert sent.status_code == 202
            sent = await http.post(f"{ours.url}/api/admin/broadcast", json={"text": "ours"})
            assert sent.status_code == 202
        event = await chat.next_event(5)
        assert event.data == {"text": "ours"}  # type: ignore[union-attr]
        with pytest.raises(TimeoutError):
            await chat.next_event(0.5)


async def test_a_locked_table_fails_fast_and_readyz_shows_it(
    server_factory: ServerFactory, cluster_database: str
) -> None:
    async with server_factory(database_url=cluster_database, db_statement_timeout=1.0) as server:
        token = await server.login("1001", "alice")
        async with server.connect(token) as chat, httpx.AsyncClient(base_url=server.url) as http:
            await chat.subscribe(ROOM)
            first = await chat.publish(ROOM, "before")
            assert (await http.get("/readyz")).status_code == 200
            locker = await asyncpg.connect(cluster_database.replace("+asyncpg", ""))
            try:
                async with locker.transaction():
                    await locker.execute(
                        "LOCK TABLE pubsub_channels, streamers IN ACCESS EXCLUSIVE MODE"
                    )
                    began = time.monotonic()
                    with pytest.raises(ChatError) as failed:
                        await chat.publish(ROOM, "during", nonce="held")
                    assert failed.value.code == "unavailable"
                    assert time.monotonic() - began < 5  # not the 40 s of the lock
                    ready = await http.get("/readyz")
                    assert ready.status_code == 503
                    assert ready.json()["checks"]["database"] == "unreachable"
            finally:
                await locker.close()
            # Back by itself; the failed message was not stored and costs nothing.
            again = await chat.publish(ROOM, "during", nonce="held")
            assert again.seq == first.seq + 1
            assert (await http.get("/readyz")).status_code == 200


async def test_a_close_by_the_server_reaches_the_client_at_once(server: LiveServer) -> None:
    """The server closes (here 1008, too many errors) and the client sees it at once, not
    when a timer cuts the connection off."""
    async with connect(ws_url(server)) as ws:
        for _ in range(21):
            await ws.send('{"type":"shout"}')
        began = time.monotonic()
        assert await close_code(ws) == 1008
        assert time.monotonic() - began < 2
