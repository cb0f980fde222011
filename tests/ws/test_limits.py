"""Limits on greedy and hostile clients: each a setting, each enforced on a real server."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.helpers import wait_for
from tests.ws.conftest import ROOM, LiveServer, ServerFactory, close_code, ws_url

TOKEN = "limits-admin-token"


async def test_a_user_keeps_at_most_n_sessions_the_oldest_go(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(max_sessions_per_user=3) as server:
        tokens = [await server.login("1001", "alice") for _ in range(5)]
        async with httpx.AsyncClient(base_url=server.url) as http:
            alive = [
                (
                    await http.get("/api/me", headers={"cookie": f"streamchat_session={t}"})
                ).status_code
                for t in tokens
            ]
        assert alive == [401, 401, 200, 200, 200]


async def test_a_pushed_out_session_loses_its_websockets(server_factory: ServerFactory) -> None:
    async with server_factory(max_sessions_per_user=1) as server:
        first = await server.login("1001", "alice")
        async with server.connect(first) as chat:
            await chat.subscribe(ROOM)
            await server.login("1001", "alice")
            async with asyncio.timeout(10):
                await chat.wait_closed()
            assert chat.close_code == 4001


async def test_logins_are_throttled_per_account_and_per_address(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(login_attempts_per_account=3, login_attempts_per_ip=5) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        for twitch_id in ("1001", "1002"):
            await http.post("/api/users", json={"twitch_id": twitch_id})
        statuses = [
            (await http.post("/api/login", json={"twitch_id": "1001"})).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        # Another account from the same address: two more, then the address is spent.
        other = [(await http.post("/api/login", json={"twitch_id": "1002"})) for _ in range(2)]
        assert [r.status_code for r in other] == [200, 429]
        body = other[-1].json()["error"]
        assert body["code"] == "too_many_attempts"
        assert 0 < body["details"]["retry_after"] <= 60


async def test_wrong_admin_tokens_are_throttled_per_address(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(admin_token=TOKEN, admin_failures_per_ip=3) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        wrong = [
            (
                await http.get("/api/admin/actors", headers={"authorization": "Bearer guess"})
            ).status_code
            for _ in range(3)
        ]
        assert wrong == [403, 403, 403]
        # Spent: even the right token waits, so guessing gains nothing.
        right = await http.get("/api/admin/actors", headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 429
        assert right.json()["error"]["code"] == "too_many_attempts"
        # X-Forwarded-For from an untrusted peer does not buy a fresh address.
        spoofed = await http.get(
            "/api/admin/actors",
            headers={"authorization": f"Bearer {TOKEN}", "x-forwarded-for": "203.0.113.9"},
        )
        assert spoofed.status_code == 429


async def test_forwarded_addresses_count_behind_a_trusted_proxy(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(
            admin_token=TOKEN, admin_failures_per_ip=1, trusted_proxies=["127.0.0.1"]
        ) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):

        async def as_client(address: str, token: str) -> int:
            headers = {"authorization": f"Bearer {token}", "x-forwarded-for": address}
            return (await http.get("/api/admin/actors", headers=headers)).status_code

        assert await as_client("203.0.113.1", "guess") == 403
        assert await as_client("203.0.113.1", TOKEN) == 429
        assert await as_client("203.0.113.2", TOKEN) == 200


async def _refused(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    return refused.value.response.status_code


async def test_websockets_per_address_and_per_user(server_factory: ServerFactory) -> None:
    async with server_factory(max_connections_per_ip=3, max_connections_per_user=2) as server:
        url = ws_url(server)
        token = await server.login("1001", "alice")
        cookie = {"cookie": f"streamchat_session={token}"}
        opened: list[ClientConnection] = []
        try:
            opened.append(await connect(url, additional_headers=cookie))
            opened.append(await connect(url, additional_headers=cookie))
            assert await _refused(url, additional_headers=cookie) == 429  # the user's third
            opened.append(await connect(url))  # anonymous: the address's third
            assert await _refused(url) == 429  # the address's fourth
            await opened.pop().close()
            await wait_for(lambda: len(server.services.connections) == 2)
            opened.append(await connect(url))  # a place came free
            assert len(server.services.connections) == 3
        finally:
            for ws in opened:
                await ws.close()
        await wait_for(lambda: len(server.services.connections) == 0)
        # Nothing leaks: every place is free again.
        for _ in range(3):
            opened.append(await connect(url))
        for ws in opened[-3:]:
            await ws.close()


async def test_a_body_over_the_limit_is_refused(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        server_factory(max_request_body=2048) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        big = {"twitch_id": "1001", "login": "x", "padding": "y" * 100_000}
        declared = await http.post("/api/users", json=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(100):
                yield b"y" * 1000

        streamed = await http.post(
            "/api/users", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        fine = await http.post("/api/users", json={"twitch_id": "1001"})
        assert fine.status_code == 201
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_a_frame_of_too_many_requests_is_refused_whole(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(ws_max_requests_per_frame=10) as server,
        connect(ws_url(server)) as ws,
    ):
        await ws.send("\n".join(json.dumps({"type": "ping", "id": i}) for i in range(11)))
        refused = json.loads(await ws.recv())
        assert refused["code"] == "too_many_requests"
        assert "id" not in refused
        await ws.send("\n".join(json.dumps({"type": "ping", "id": i}) for i in range(10)))
        replies = [json.loads(line) for line in (await ws.recv()).split("\n")]
        while len(replies) < 10:
            replies += [json.loads(line) for line in (await ws.recv()).split("\n")]
        assert [r["id"] for r in replies] == list(range(10))


async def test_requests_per_second_per_connection(server_factory: ServerFactory) -> None:
    async with server_factory(ws_requests_per_second=5) as server, connect(ws_url(server)) as ws:
        # A burst of twice the rate goes through; the rest are refused by id.
        frames = [{"type": "history", "id": i, "room": ROOM} for i in range(14)]
        await ws.send("\n".join(json.dumps(f) for f in frames))
        replies: list[dict[str, object]] = []
        while len(replies) < 14:
            replies += [json.loads(line) for line in (await ws.recv()).split("\n")]
        by_id = {r["id"]: r for r in replies}
        assert [by_id[i]["type"] for i in range(10)] == ["history"] * 10
        assert {by_id[i]["code"] for i in range(10, 14)} == {"too_many_requests"}
        assert all(0 < by_id[i]["details"]["retry_after"] <= 1 for i in range(10, 14))
        await asyncio.sleep(0.5)  # 2.5 requests earned
        await ws.send(json.dumps({"type": "ping", "id": 99}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 99}


async def test_a_flood_of_refused_requests_ends_in_1008(server_factory: ServerFactory) -> None:
    async with server_factory(ws_requests_per_second=1) as server, connect(ws_url(server)) as ws:
        for i in range(30):
            await ws.send(json.dumps({"type": "presence", "id": i, "room": ROOM}))
        assert await close_code(ws) == 1008


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (reading what it sends)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"GET /api/streamers HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",  # body never
    ],
)
async def test_slow_http_clients_are_cut_off(server_factory: ServerFactory, sent: bytes) -> None:
    async with server_factory(http_request_timeout=1.0) as server:
        port = int(server.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(sent)
            await writer.drain()
            assert await _closed_within(reader, 4.0)
        finally:
            writer.close()


async def _deadline_passed(server: LiveServer) -> None:
    """Wait until the request deadline cuts a connection that says nothing, opened now: by
    then every connection opened before it is older than the deadline."""
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await _closed_within(reader, 4.0)
    finally:
        writer.close()


async def test_the_request_deadline_spares_whole_requests_and_websockets(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(http_request_timeout=1.0) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        connect(ws_url(server)) as ws,
    ):
        # One keep-alive connection, with requests before and after the deadline.
        assert (await http.get("/api/streamers")).status_code == 200
        await _deadline_passed(server)
        for _ in range(2):
            assert (await http.get("/api/streamers")).status_code == 200
        # A WebSocket older than the deadline is left alone.
        await ws.send('{"type":"ping","id":1}')
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 1}
