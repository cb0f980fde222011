"""streamchat against Node Socket.IO, python-socketio and a bare aiohttp loop, in one run.

    make bench                                   # everything: ~10 minutes
    .venv/bin/python bench/run.py --only capacity --servers streamchat,socketio
    .venv/bin/python bench/run.py --smoke --servers streamchat   # seconds; the test suite's

Sections (``--only``, comma-separated, in this order):

1. ``capacity`` — fan-out capacity of one room (deliveries/s at no loss, p99 ≤ 50 ms);
2. ``memory``   — RSS per idle, logged-in, subscribed connection;
3. ``rooms``    — 200 rooms x 25 subscribers, 1,000 msg/s, on SQLite and PostgreSQL;
4. ``connrate`` — authenticated handshakes + subscribe per second;
5. ``slow``     — 1 % of clients stop reading.

Every server runs as a real process on a loopback port; one Node process
(``bench/loadgen``) plays all the clients. The peers and the load generator are
installed on first use into bench-local folders (``npm ci``, a venv in
``bench/.peers``). Results are printed, and written to ``bench/results/latest.json``
and ``latest.md`` (or next to ``--out``), with the logs in ``latest-logs/``. Only
127.0.0.1 is ever contacted; every run is bounded in time and every child process
is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.accounts import Accounts, postgres_database, prepare_database, sqlite_copy
from harness.capacity import measure_capacity
from harness.config import SECTIONS, SERVERS, BenchConfig
from harness.connrate import measure_connrate
from harness.install import BENCH, InstallError, ensure_loadgen, ensure_peers
from harness.loadgen import raise_fd_limit
from harness.memory import measure_memory
from harness.procfs import MachineMeter, machine_info
from harness.report import build_tables, render_markdown, render_terminal
from harness.rooms import measure_rooms
from harness.servers import PEERS, RunningServer, ServerSpec, profiled, start_server
from harness.slow import measure_slow
from rich.console import Console

console = Console(stderr=True)


def _csv(allowed: tuple[str, ...]) -> Any:
    def parse(value: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in value.split(",") if name.strip())
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})"
            )
        return names

    return parse


def parse_args(argv: list[str]) -> tuple[BenchConfig, Path]:
    parser = argparse.ArgumentParser(
        description="Benchmark streamchat against its peers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", type=_csv(SECTIONS), default=SECTIONS, help="sections to run")
    parser.add_argument("--servers", type=_csv(SERVERS), default=SERVERS, help="servers to measure")
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: a few seconds")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results" / "latest.json", help="results JSON"
    )
    parser.add_argument("--transport", choices=("raw", "ws"), help="load generator client")
    parser.add_argument("--postgres-url", help="admin URL for the rooms section's scratch DB")
    parser.add_argument("--capacity-clients", type=int)
    parser.add_argument("--capacity-seconds", type=float)
    parser.add_argument("--capacity-start-rate", type=float)
    parser.add_argument("--memory-connections", type=int)
    parser.add_argument("--connrate-connections", type=int)
    parser.add_argument("--slow-rate", type=float)
    parser.add_argument(
        "--streamchat-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the streamchat server (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record streamchat with py-spy; raw stacks land beside the results' logs",
    )
    args = parser.parse_args(argv)
    cfg = BenchConfig()
    if args.smoke:
        cfg = cfg.smoke()
    overrides: dict[str, Any] = {"servers": args.servers, "sections": args.only}
    for name in (
        "transport",
        "postgres_url",
        "capacity_clients",
        "capacity_seconds",
        "capacity_start_rate",
        "memory_connections",
        "connrate_connections",
        "slow_rate",
    ):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    env = dict(item.split("=", 1) for item in args.streamchat_env)
    overrides["streamchat_env"] = env
    overrides["profile"] = args.profile
    return replace(cfg, **overrides), args.out


class Bench:
    """One run: the template database, the servers, the sections, the report."""

    def __init__(self, cfg: BenchConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.template = workdir / "template.db"
        self.accounts: Accounts | None = None
        self.sections: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    # -- setup -------------------------------------------------------------------

    def _subscribers_needed(self) -> int:
        cfg = self.cfg
        needs = {
            "capacity": cfg.capacity_clients,
            "memory": cfg.memory_connections,
            "rooms": cfg.rooms_count * cfg.rooms_subscribers,
            "connrate": cfg.connrate_connections,
            "slow": cfg.slow_clients,
        }
        return max(needs[section] for section in cfg.sections)

    async def prepare(self) -> None:
        if "streamchat" not in self.cfg.servers:
            return
        self.accounts = await prepare_database(
            f"sqlite+aiosqlite:///{self.template}",
            self.workdir / "tokens.json",
            subscribers=self._subscribers_needed(),
            publishers=self.cfg.publishers_needed,
            rooms=self.cfg.rooms_count,
        )

    def _database(self, spec: ServerSpec) -> str | None:
        if spec.name != "streamchat":
            return None
        return sqlite_copy(self.template, self.workdir / "db")

    def _env(self, spec: ServerSpec, extra: dict[str, str] | None = None) -> dict[str, str]:
        if spec.name != "streamchat":
            return {}
        return {**self.cfg.streamchat_env, **(extra or {})}

    # -- sections ----------------------------------------------------------------

    async def _each_server(self, section: str, servers: tuple[str, ...], measure: Any) -> None:
        results = self.sections.setdefault(section, {})
        for name in servers:
            spec = PEERS[name]
            console.print(f"[bold]{section}[/]: {spec.label}")
            try:
                async with (
                    start_server(
                        spec,
                        self.logs,
                        database_url=self._database(spec),
                        env=self._env(spec, self._section_env(section)),
                    ) as server,
                    self._profiled(server, section),
                ):
                    results[name] = await measure(server, self.cfg, self.accounts, self.logs)
            except Exception as exc:
                self._failed(f"{section} on {name}", exc)

    def _profiled(self, server: RunningServer, section: str) -> AbstractAsyncContextManager[None]:
        if not self.cfg.profile or server.spec.name != "streamchat":
            return nullcontext()
        return profiled(server, self.logs / f"profile-{section}-{server.port}.txt")

    def _section_env(self, section: str) -> dict[str, str]:
        if section == "slow":
            return {"STREAMCHAT_WS_MAX_QUEUED_BYTES": str(self.cfg.slow_max_queued_bytes)}
        return {}

    def _failed(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        self.errors.append(message)
        console.print(f"[bold red]failed[/] {message}")
        traceback.print_exc(file=sys.stderr)

    async def rooms(self) -> None:
        if "streamchat" not in self.cfg.servers or self.accounts is None:
            return
        results = self.sections.setdefault("rooms", {})
        spec = PEERS["streamchat"]
        for database in self.cfg.rooms_databases:
            console.print(f"[bold]rooms[/]: streamchat on {database}")
            try:
                if database == "sqlite":
                    url = sqlite_copy(self.template, self.workdir / "db")
                    async with (
                        start_server(
                            spec, self.logs, database_url=url, env=self._env(spec)
                        ) as server,
                        self._profiled(server, "rooms-sqlite"),
                    ):
                        results[database] = await measure_rooms(
                            server,
                            self.cfg,
                            self.accounts,
                            self.logs,
                            database=database,
                            database_url=url,
                        )
                else:
                    async with postgres_database(self.cfg.postgres_url) as url:
                        accounts = await prepare_database(
                            url,
                            self.workdir / "tokens-postgres.json",
                            subscribers=self.cfg.rooms_count * self.cfg.rooms_subscribers,
                            publishers=self.cfg.publishers_needed,
                            rooms=self.cfg.rooms_count,
                        )
                        async with (
                            start_server(
                                spec, self.logs, database_url=url, env=self._env(spec)
                            ) as server,
                            self._profiled(server, "rooms-postgres"),
                        ):
                            results[database] = await measure_rooms(
                                server,
                                self.cfg,
                                accounts,
                                self.logs,
                                database=database,
                                database_url=url,
                            )
            except Exception as exc:
                self._failed(f"rooms on {database}", exc)

    async def run(self) -> None:
        servers = self.cfg.servers
        for section in self.cfg.sections:
            match section:
                case "capacity":
                    await self._each_server(section, servers, measure_capacity)
                case "memory":
                    await self._each_server(section, servers, measure_memory)
                case "rooms":
                    await self.rooms()
                case "connrate":
                    await self._each_server(section, servers, measure_connrate)
                case "slow":
                    chosen = tuple(s for s in servers if s in self.cfg.slow_servers)
                    await self._each_server(section, chosen, measure_slow)


def _command(argv: list[str]) -> str:
    """How this run was started, as a reader would type it."""
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else "")
    return shlex.join([".venv/bin/python", "bench/run.py", *argv])


def _commit() -> str:
    """The streamchat commit measured, with "+dirty" when the tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCH.parent, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "streamchat") else "")


async def main(argv: list[str]) -> int:
    cfg, out = parse_args(argv)
    started = time.monotonic()
    started_at = datetime.now(UTC).replace(microsecond=0)
    raise_fd_limit()
    try:
        ensure_loadgen()
        ensure_peers(cfg.servers)
    except InstallError as exc:
        console.print(f"[bold red]cannot run the benchmark:[/] {exc}")
        return 2
    background = await MachineMeter.sample(1.0)
    if background > 20:
        console.print(
            f"[yellow]warning:[/] the machine is already {background:.0f}% busy "
            "(100 = one core); figures will be lower than on a quiet machine"
        )
    workdir = Path(tempfile.mkdtemp(prefix="streamchat-bench-"))
    bench = Bench(cfg, workdir)
    try:
        await bench.prepare()
        await bench.run()
    finally:
        logs = out.with_name(f"{out.stem}-logs")
        shutil.rmtree(logs, ignore_errors=True)
        if bench.logs.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(bench.logs, logs)
        shutil.rmtree(workdir, ignore_errors=True)
    report: dict[str, Any] = {
        "started": started_at.isoformat(),
        "duration_s": round(time.monotonic() - started, 1),
        "command": _command(argv),
        "commit": _commit(),
        "machine": machine_info(),
        "background_cpu_percent_at_start": round(background, 1),
        "config": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(cfg).items()
        },
        "labels": {name: spec.label for name, spec in PEERS.items()},
        "sections": bench.sections,
        "errors": bench.errors,
    }
    tables = build_tables(report)
    render_terminal(tables, Console(width=None if sys.stdout.isatty() else 200))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(tables, report) + "\n")
    console.print(f"results: {out} and {out.with_suffix('.md')} ({report['duration_s']:.0f} s)")
    if bench.errors:
        console.print("[bold red]errors:[/]\n  " + "\n  ".join(bench.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
