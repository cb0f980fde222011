from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from streamchat.cli import refuse_unsafe_bind
from streamchat.config import AuthMode, Settings
from tests.ws._process import ServerSet, reserve_port


def _streamchat(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamchat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        ([], {"STREAMCHAT_HOST": "0.0.0.0"}),
        (["--host", "192.0.2.10"], {}),
        (["--host", "::"], {}),
    ],
)
def test_dev_auth_refuses_non_loopback(args: list[str], env: dict[str, str]) -> None:
    result = _streamchat("serve", *args, env=env)
    assert result.returncode == 2
    assert "dev auth mode" in result.stderr
    assert "STREAMCHAT_ALLOW_DEV_AUTH_REMOTE" in result.stderr


def test_bind_policy() -> None:
    assert refuse_unsafe_bind(Settings(host="127.0.0.1")) is None
    assert refuse_unsafe_bind(Settings(host="localhost")) is None
    assert refuse_unsafe_bind(Settings(host="::1")) is None
    assert refuse_unsafe_bind(Settings(host="0.0.0.0")) is not None
    assert refuse_unsafe_bind(Settings(host="0.0.0.0", allow_dev_auth_remote=True)) is None
    # The twitch mode needs its application's credentials and the public URL, by name.
    refused = refuse_unsafe_bind(Settings(auth_mode=AuthMode.TWITCH))
    assert refused is not None
    for name in ("TWITCH_CLIENT_ID", "TWITCH_CLIENT_SECRET", "PUBLIC_URL"):
        assert f"STREAMCHAT_{name} is required" in refused
    twitch = Settings(
        auth_mode=AuthMode.TWITCH,
        twitch_client_id="app",
        twitch_client_secret="secret",
        public_url="https://chat.example.com",
    )
    assert refuse_unsafe_bind(twitch) is None


def test_migrate_and_seed(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "chat.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrated = _streamchat("migrate", "--database-url", url)
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"users", "sessions", "streamers", "alembic_version"} <= tables
        assert conn.execute("SELECT count(*) FROM streamers").fetchone() == (0,)

    seeded = _streamchat("seed", env={"STREAMCHAT_DATABASE_URL": url})
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded" in seeded.stderr
    again = _streamchat("seed", env={"STREAMCHAT_DATABASE_URL": url})
    assert again.returncode == 0
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT count(*) FROM streamers").fetchone()[0]
    assert count >= 20


async def test_serve_honours_the_environment(tmp_path: Path) -> None:
    with ServerSet(tmp_path) as servers:
        server = servers.add(
            "serve",
            {
                "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
                "STREAMCHAT_LOG_LEVEL": "warning",
            },
            port_flag=False,  # STREAMCHAT_PORT
        )
        await server.start()
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.post("/api/users", json={"twitch_id": "77"})).status_code == 201
            assert (await client.post("/api/login", json={"twitch_id": "77"})).status_code == 200
            favorite = await client.put("/api/me/favorite", json={"streamer": "sablesignal"})
            assert favorite.status_code == 200
            favorites = [
                s["login"] for s in (await client.get("/api/streamers")).json() if s["is_favorite"]
            ]
            assert favorites == ["sablesignal"]
        server.interrupt()
        assert server.wait_stopped(15) == 0, server.log()


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        ("serve", {"STREAMCHAT_LOG_FORMAT": "xml"}, "STREAMCHAT_LOG_FORMAT"),
        ("serve", {"STREAMCHAT_LOG_LEVEL": "loud"}, "STREAMCHAT_LOG_LEVEL"),
        ("serve", {"STREAMCHAT_WATCH_INTERVAL": "0"}, "STREAMCHAT_WATCH_INTERVAL"),
        ("worker", {"STREAMCHAT_RETENTION_DAYS": "-1"}, "STREAMCHAT_RETENTION_DAYS"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(
    command: str, env: dict[str, str], named: str
) -> None:
    result = _streamchat(command, env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unknown_broker_scheme_is_one_line(command: str, tmp_path: Path) -> None:
    result = _streamchat(
        command,
        env={
            "STREAMCHAT_BROKER_URL": "bogus://x",
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        },
    )
    assert result.returncode == 2
    assert "unknown broker scheme 'bogus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_that_cannot_reach_its_broker_says_so(tmp_path: Path) -> None:
    # A port of ours that refuses connections: bound, not listening.
    with reserve_port() as refusing:
        result = _streamchat(
            "worker",
            env={
                "STREAMCHAT_BROKER_URL": f"redis://127.0.0.1:{refusing.getsockname()[1]}",
                "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
            },
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_setting_is_a_flag_of_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from streamchat import cli

    given: dict[str, object] = {}

    def capture(**flags: object) -> Settings:
        given.update({name: value for name, value in flags.items() if value is not None})
        raise cli.typer.Exit(0)

    monkeypatch.setattr(cli, "_settings", capture)
    help_text = CliRunner().invoke(cli.app, ["serve", "--help"], env={"COLUMNS": "400"}).output
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text, name
        assert f"STREAMCHAT_{name.upper()}" in help_text, name
    result = CliRunner().invoke(
        cli.app,
        [
            "serve",
            "--retention-days",
            "2.5",
            "--no-rate-limit",
            "--auth-mode",
            "dev",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--no-workers",
        ],
    )
    assert result.exit_code == 0, result.output
    assert given == {
        "retention_days": 2.5,
        "rate_limit": False,
        "auth_mode": AuthMode.DEV,
        "allowed_origins": "https://a.example,https://b.example",
        "run_singletons": False,
    }


def test_a_bad_flag_value_is_named_like_its_variable(tmp_path: Path) -> None:
    result = _streamchat("serve", "--ws-requests-per-second", "0")
    assert result.returncode == 2
    assert "--ws-requests-per-second" in result.stderr
    assert "STREAMCHAT_WS_REQUESTS_PER_SECOND" in result.stderr
    assert "Traceback" not in result.stderr
