"""Request ids, the line each request logs as it starts, and ``GET /metrics``."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.ws.conftest import ROOM, ServerFactory, ws_url

TOKEN = "metrics-token"


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "streamchat.access"]


async def test_http_requests_keep_or_get_a_request_id_and_log_a_line(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamchat.access")
    async with server_factory() as server:
        token = await server.login("1001", "alice")
        async with httpx.AsyncClient(base_url=server.url) as http:
            kept = await http.get(
                "/api/me",
                headers={"x-request-id": "trace-42", "cookie": f"streamchat_session={token}"},
            )
            made = await http.get("/api/streamers/nobody")
            junk = await http.get("/api/streamers", headers={"x-request-id": "a b\tc"})
    assert kept.status_code == 200
    assert kept.headers["x-request-id"] == "trace-42"
    # Errors carry it too; a header that is not safe to log is replaced.
    assert made.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", junk.headers["x-request-id"])
    lines = {r.request_id: r for r in _access(caplog)}  # type: ignore[attr-defined]
    me = lines["trace-42"]
    assert (me.kind, me.method, me.path, me.user_id) == ("http", "GET", "/api/me", "1001")  # type: ignore[attr-defined]
    missing = lines[made.headers["x-request-id"]]
    assert (missing.path, missing.user_id) == ("/api/streamers/nobody", None)  # type: ignore[attr-defined]


async def test_websocket_requests_log_a_line_each(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamchat.access")
    async with server_factory() as server:
        token = await server.login("1001", "alice")
        async with connect(
            ws_url(server),
            additional_headers={
                "cookie": f"streamchat_session={token}",
                "x-request-id": "conn-7",
            },
        ) as ws:
            assert ws.response.headers["x-request-id"] == "conn-7"
            frames = [
                {"type": "subscribe", "id": 1, "room": ROOM},
                {"type": "publish", "id": 2, "room": ROOM, "text": "hi"},
                {"type": "shout", "id": 3},
            ]
            await ws.send("\n".join(json.dumps(frame) for frame in frames))
            for _ in range(3):
                await ws.recv()
    lines = [r for r in _access(caplog) if r.kind == "ws"]  # type: ignore[attr-defined]
    assert [(r.type, r.room, r.user_id, r.request_id, r.id) for r in lines] == [  # type: ignore[attr-defined]
        ("subscribe", ROOM, "1001", "conn-7", 1),
        ("publish", ROOM, "1001", "conn-7", 2),
        ("invalid", None, "1001", "conn-7", 3),
    ]


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def test_metrics_count_what_happens(server_factory: ServerFactory) -> None:
    async with server_factory() as server:
        token = await server.login("1001", "alice")
        async with server.connect(token) as chat, server.connect() as reader:
            await chat.subscribe(ROOM)
            await reader.subscribe(ROOM)
            await chat.publish(ROOM, "counted")
            await reader.next_event(5)
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "streamchat_connections") == 2
    assert _value(text, "streamchat_subscriptions") == 2
    assert _value(text, "streamchat_messages_published_total") == 1
    assert _value(text, "streamchat_messages_delivered_total") >= 2
    assert _value(text, "streamchat_publish_ack_seconds_count") == 1
    assert _value(text, "streamchat_broker_up") == 1
    assert _value(text, "streamchat_database_up") == 1
    assert _value(text, 'streamchat_actor_restarts_total{actor="presence-janitor"}') == 0
    assert _value(text, 'streamchat_actor_mailbox{actor="presence-janitor"}') == 0


async def test_metrics_can_sit_behind_the_admin_token(server_factory: ServerFactory) -> None:
    async with (
        server_factory(admin_token=TOKEN, metrics_public=False) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 403
        right = await http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
