"""Real processes on PostgreSQL and Redis: two servers that leave the actors to two workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamchat.client import ChatClient, login
from streamchat.protocol import EventFrame
from tests.helpers import wait_for
from tests.ws._process import ChildProcess, ServerProcess, ServerSet
from tests.ws.test_cluster import cluster_database

__all__ = ["cluster_database"]

TOKEN = "worker-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROOM = "sablesignal"
OTHER_ROOM = "pixelpaladin"


@dataclass
class Deployment:
    """Two servers that leave the singleton actors to two workers."""

    a: ServerProcess
    b: ServerProcess
    workers: list[ChildProcess]


@pytest.fixture
async def deployment(
    cluster_database: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    settings = {
        "STREAMCHAT_DATABASE_URL": cluster_database,
        "STREAMCHAT_BROKER_URL": redis_url,
        "STREAMCHAT_ADMIN_TOKEN": TOKEN,
        "STREAMCHAT_LOG_LEVEL": "info",
        "STREAMCHAT_WATCH_SPEED": "600",
        "STREAMCHAT_WATCH_INTERVAL": "0.2",
    }
    with ServerSet(tmp_path) as processes:
        a = processes.add("server-a", settings, "--no-workers")
        b = processes.add("server-b", settings, "--no-workers")
        await a.start()  # one at a time: the first migrates
        await b.start()
        workers = [processes.add_worker(name, settings) for name in ("worker-1", "worker-2")]
        for worker in workers:
            worker.spawn()
        yield Deployment(a, b, workers)
    for child in processes.processes:
        if not child.killed:
            assert "Traceback" not in child.log(), f"{child.name}:\n{child.log()}"


async def _placement(http: httpx.AsyncClient, actor: str) -> dict[str, str]:
    """The state of ``actor`` on each node pid, as any server reports it."""
    listing = (await http.get("/api/admin/actors")).json()
    return {
        str(entry["node"]["pid"]): entry["state"]
        for entry in listing["actors"]
        if entry["name"] == actor and entry["node"] is not None
    }


async def _leader(http: httpx.AsyncClient, actor: str, among: set[int], wait: float) -> int:
    """The pid (one of ``among``) running ``actor``, once the others stand by."""

    async def leader() -> int | None:
        placement = await _placement(http, actor)
        running = [int(pid) for pid, state in placement.items() if state == "running"]
        standby = [int(pid) for pid, state in placement.items() if state == "standby"]
        if len(running) == 1 and running[0] in among and set(standby) == among - {running[0]}:
            return running[0]
        return None

    return await wait_for(leader, wait, interval=0.1, what=f"one leader of {actor}")


async def test_actors_in_workers_are_steered_from_any_server_and_fail_over(
    deployment: Deployment,
) -> None:
    a, b = deployment.a, deployment.b
    workers = {worker.pid: worker for worker in deployment.workers}
    async with (
        httpx.AsyncClient(base_url=a.url, headers=AUTH, timeout=15) as http_a,
        httpx.AsyncClient(base_url=b.url, headers=AUTH, timeout=15) as http_b,
    ):
        # Exactly one worker leads each singleton; the other stands by; the servers
        # (--no-workers) do not run them at all.
        leader = await _leader(http_a, "stream-watcher", set(workers), wait=20)
        await _leader(http_b, "retention", set(workers), wait=20)
        listing = (await http_b.get("/api/admin/actors")).json()
        kinds = {(n["pid"], n["kind"]) for n in listing["nodes"]}
        assert {(a.pid, "server"), (b.pid, "server")} <= kinds
        assert all(n["answered"] for n in listing["nodes"])

        # A command sent to a server reaches the watcher in its worker, and the reply comes back.
        for http in (http_a, http_b):
            response = await http.post(
                "/api/admin/actors/stream-watcher/commands", json={"command": "refresh"}
            )
            assert response.status_code == 200, response.text
            assert isinstance(response.json()["reply"]["changed"], list)
        paused = await http_b.post(
            "/api/admin/actors/retention/commands", json={"command": "pause"}
        )
        assert paused.json()["reply"] == {"state": "paused"}
        assert "paused" in (await _placement(http_a, "retention")).values()
        bad = await http_a.post(
            "/api/admin/actors/stream-watcher/commands",
            json={"command": "refresh", "args": {"x": 1}},
        )
        assert bad.status_code == 422

        # The watcher's events, and an operator's broadcast, reach rooms on both servers.
        alice = await login(a.url, "1001", "alice")
        bob = await login(b.url, "1002", "bob")
        async with ChatClient.connect(a.url, alice) as on_a, ChatClient.connect(b.url, bob) as on_b:
            await on_a.subscribe(ROOM)
            await on_b.subscribe(OTHER_ROOM)
            await _event(on_a, lambda e: e.kind.startswith("stream.") and e.room == ROOM)
            sent = await http_a.post("/api/admin/broadcast", json={"text": "maintenance soon"})
            assert sent.status_code == 202
            for chat, room in ((on_a, ROOM), (on_b, OTHER_ROOM)):
                event = await _event(chat, lambda e: e.kind == "broadcast")
                assert event == EventFrame(room, "broadcast", {"text": "maintenance soon"})

        # kill -9 the leading worker: the other takes the watcher over within 15 s.
        workers[leader].kill()
        began = time.monotonic()
        (survivor,) = set(workers) - {leader}

        async def survivor_runs_it() -> bool:
            placement = await _placement(http_b, "stream-watcher")
            return placement.get(str(survivor)) == "running"

        await wait_for(survivor_runs_it, 15, interval=0.1)
        took = time.monotonic() - began
        assert took < 15
        response = await http_a.post(
            "/api/admin/actors/stream-watcher/commands", json={"command": "refresh"}
        )
        assert response.status_code == 200, response.text

    # A worker stops within its deadline and says so.
    worker = workers[survivor]
    worker.terminate()
    assert worker.wait_stopped(10) != -signal.SIGKILL, "not stopped within 10 s"
    assert "actors stopped:" in worker.log()


async def _event(chat: ChatClient, match: Any) -> EventFrame:
    async with asyncio.timeout(15):
        while True:
            event = await chat.next_event(15)
            if isinstance(event, EventFrame) and match(event):
                return event


def test_a_worker_refuses_the_in_memory_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamchat", "worker"],
        env={
            **os.environ,
            "STREAMCHAT_BROKER_URL": "memory://",
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "STREAMCHAT_BROKER_URL" in result.stderr
