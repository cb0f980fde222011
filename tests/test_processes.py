"""``streamchat serve --workers N``: N server processes on one port, watched by a parent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from streamchat.client import ChatClient, login
from tests.helpers import messages, wait_for
from tests.ws._process import ServerSet

ROOM = "sablesignal"


def _serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamchat", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize("count", ["0", "65"])
def test_a_count_out_of_bounds_is_refused(count: str, tmp_path: Path) -> None:
    result = _serve("--workers", count, env={"STREAMCHAT_BROKER_URL": "redis://127.0.0.1:1"})
    assert result.returncode == 2
    assert "--workers takes 1 to 64" in result.stderr


@pytest.mark.parametrize(
    ("args", "env"), [(["--workers", "2"], {}), ([], {"STREAMCHAT_WORKERS": "2"})]
)
def test_several_processes_need_a_broker_that_joins_them(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    result = _serve(
        *args, env={"STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **env}
    )
    assert result.returncode == 2
    assert "memory:// broker" in result.stderr
    assert "STREAMCHAT_BROKER_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def _server_pids(database_url: str) -> set[int]:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM cluster_nodes WHERE kind = 'server' AND expires_at > now()"
        )
    finally:
        await conn.close()
    return {row["pid"] for row in rows}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_processes_share_one_port_and_stand_in_for_each_other(
    empty_postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    settings = {
        "STREAMCHAT_DATABASE_URL": empty_postgres_database,
        "STREAMCHAT_BROKER_URL": redis_url,
        "STREAMCHAT_BROKER_NAMESPACE": f"test-{os.getpid()}-{id(tmp_path)}:",
        "STREAMCHAT_LOG_LEVEL": "info",
    }
    with ServerSet(tmp_path) as servers:
        server = servers.add("multi", settings, "--workers", "2", reuse_port=True)
        await server.start()

        async def two_servers() -> set[int] | None:
            pids = await _server_pids(empty_postgres_database)
            return pids if len(pids) == 2 else None

        pids = await wait_for(two_servers, within=30, interval=0.2, what="two server processes")
        assert server.pid not in pids  # the parent only watches

        # Clients land on either process; the room is one.
        alice = await login(server.url, "1001", "alice")
        bob = await login(server.url, "1002", "bob")
        chats = [ChatClient.connect(server.url, s) for s in (alice, bob, alice, bob)]
        async with chats[0] as a, chats[1] as b, chats[2] as c, chats[3] as d:
            for chat in (a, b, c, d):
                await chat.subscribe(ROOM)
            await a.publish(ROOM, "one")
            await b.publish(ROOM, "two")
            for chat in (a, b, c, d):
                assert [m.text for m in await messages(chat, 2)] == ["one", "two"]

        # A process that dies is started again.
        dead = min(pids)
        os.kill(dead, 9)

        async def replaced() -> set[int] | None:
            now = {pid for pid in await _server_pids(empty_postgres_database) if _alive(pid)}
            return now if len(now) == 2 and dead not in now else None

        pids = await wait_for(replaced, within=60, interval=0.2, what="the dead one replaced")

        # SIGTERM stops them all.
        server.terminate()
        assert server.wait_stopped(40) == 0
        await wait_for(lambda: not any(_alive(pid) for pid in pids), within=10)
    assert "Traceback" not in server.log(), server.log()
    assert "exited with -9" in server.log()
