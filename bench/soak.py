"""Soak: many clients chat for minutes through random disconnections; nothing acked is lost.

    make soak                                        # 200 clients, 10 rooms, 10 minutes
    make soak SOAK_ARGS="--minutes 2 --clients 100"
    .venv/bin/python bench/soak.py --minutes 0.5 --clients 20 --out soak.json
    .venv/bin/python bench/soak.py --servers 2 --broker redis://127.0.0.1:6379 \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/test

The soak starts streamchat itself (``streamchat serve`` on a free loopback port,
SQLite in a temporary folder and the memory broker; or, with ``--broker`` and
``--database``, one or more processes sharing a scratch PostgreSQL database,
created on that server and dropped afterwards, and the broker). Its users
register and log in over HTTP in dev auth mode. Each client joins one to three
rooms, publishes at random intervals with a nonce, and drops its connection
after a random lifetime (closing it, or cutting it without a close frame),
comes back a moment later to any server, resubscribes with ``since`` and
``epoch``, and sends again whatever was not acked.

After ``--minutes`` of traffic, clients stop publishing and dropping, retry
what is unacked, and read until every room's last ``seq``; then the soak checks:

- every message was acked (retries with the same nonce included);
- no acked message is missing from any client subscribed to its room at the
  time, counting what ``since`` replayed, and no subscription skipped a ``seq``;
- no client received any ``(room, seq)`` twice, or out of order;
- every acked message is in history, read both with ``GET
  /api/rooms/{room}/messages`` and the ``history`` request, with its message id
  and text, numbered without gaps, and nothing else is stored;
- the server's RSS, sampled every few seconds, stays flat after warm-up: the
  mean of the last quarter of the samples is at most ``--rss-growth`` percent
  above the mean of the second quarter.

It prints a Markdown summary (and writes JSON with ``--out``) and exits 1 if a
check fails. Only 127.0.0.1 is contacted; traffic stops after ``--minutes``,
the drain and the history checks have their own time limits, and the servers
are stopped on every way out (and killed by the kernel should this process die).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvloop
from harness.accounts import postgres_database
from harness.chatter import Behaviour, Chatter, Phases
from harness.ledger import Ledger, audit_view, percentiles
from harness.loadgen import raise_fd_limit
from harness.servers import PEERS, RunningServer, ServerSpec, start_server

from streamchat.client import ChatClient, login

LATENCY_POINTS = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_PAGE = 100


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 10.0
    clients: int = 200
    rooms: int = 10
    #: Each client is in one to this many rooms at a time.
    rooms_per_client: int = 3
    #: Mean seconds between two messages of one client (exponential).
    message_interval: float = 4.0
    #: Mean seconds a connection lives before its client drops it.
    mean_connected: float = 30.0
    #: Share of the drops that cut the connection without a close frame.
    abort_share: float = 0.5
    servers: int = 1
    broker: str = "memory://"
    database: str | None = None
    #: Seconds between two RSS samples (fewer when the run is short: at least 20 samples).
    rss_interval: float = 5.0
    #: Largest growth allowed, in percent, from the second quarter's mean RSS to the last's.
    rss_growth: float = 10.0
    drain_timeout: float = 60.0
    verify_timeout: float = 120.0
    seed: int = 1
    out: str | None = None


# -- the command line --------------------------------------------------------------------


def parse_args(argv: list[str]) -> SoakConfig:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(
        description="Soak streamchat: clients chat through random disconnections; "
        "every acked message must reach every subscriber once, and RSS must stay flat.",
    )
    add = parser.add_argument
    add("--minutes", type=float, default=defaults.minutes, help="minutes of traffic")
    add("--clients", type=int, default=defaults.clients, help="simulated users")
    add("--rooms", type=int, default=defaults.rooms, help="rooms (sample streamers) in use")
    add("--rooms-per-client", type=int, default=defaults.rooms_per_client)
    add(
        "--message-interval",
        type=float,
        default=defaults.message_interval,
        help="mean seconds between two messages of one client",
    )
    add(
        "--mean-connected",
        type=float,
        default=defaults.mean_connected,
        help="mean seconds a connection lives before its client drops it",
    )
    add("--abort-share", type=float, default=defaults.abort_share)
    add("--servers", type=int, default=defaults.servers, help="server processes")
    add("--broker", default=defaults.broker, help="e.g. redis://127.0.0.1:6379")
    add(
        "--database",
        default=None,
        help="PostgreSQL server to make a scratch database on, "
        "e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test (default: SQLite)",
    )
    add("--rss-interval", type=float, default=defaults.rss_interval)
    add("--rss-growth", type=float, default=defaults.rss_growth, help="percent")
    add("--drain-timeout", type=float, default=defaults.drain_timeout)
    add("--verify-timeout", type=float, default=defaults.verify_timeout)
    add("--seed", type=int, default=defaults.seed)
    add("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    cfg = SoakConfig(**{key.replace("-", "_"): value for key, value in vars(args).items()})
    problems = [
        message
        for failed, message in (
            (cfg.minutes <= 0, "--minutes must be positive"),
            (cfg.clients < 1, "--clients must be at least 1"),
            (cfg.rooms < 1, "--rooms must be at least 1"),
            (cfg.rooms_per_client < 1, "--rooms-per-client must be at least 1"),
            (cfg.message_interval <= 0, "--message-interval must be positive"),
            (cfg.mean_connected <= 0, "--mean-connected must be positive"),
            (not 0 <= cfg.abort_share <= 1, "--abort-share is a share, 0 to 1"),
            (cfg.servers < 1, "--servers must be at least 1"),
            (
                cfg.servers > 1 and cfg.broker.startswith("memory:"),
                "several servers need a shared broker (--broker)",
            ),
            (
                cfg.servers > 1 and cfg.database is None,
                "several servers need a shared database (--database)",
            ),
            (
                cfg.database is not None and not cfg.database.startswith("postgresql"),
                "--database takes a postgresql:// or postgresql+asyncpg:// URL",
            ),
        )
        if failed
    ]
    for url in (cfg.broker, cfg.database):
        host = urlsplit(url).hostname if url else None
        if host is not None and host not in _LOOPBACK:
            problems.append(f"{url}: the soak only talks to this machine (127.0.0.1)")
    if problems:
        parser.error("; ".join(problems))
    return cfg


# -- servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TetheredSpec(ServerSpec):
    """streamchat, killed by the kernel should the soak die without stopping it."""

    def command(self) -> list[str]:
        command = super().command()
        if shutil.which("setpriv") is None:
            return command
        return ["setpriv", "--pdeathsig", "KILL", "--", *command]


def _server_env(cfg: SoakConfig) -> dict[str, str]:
    return {
        "STREAMCHAT_BROKER_URL": cfg.broker,
        # Every user logs in from 127.0.0.1 within seconds.
        "STREAMCHAT_LOGIN_ATTEMPTS_PER_IP": "1000000",
        # A soak runs the server whole: stream watcher and retention included.
        "STREAMCHAT_RUN_SINGLETONS": "true",
    }


def _admin_url(url: str) -> str:
    """asyncpg's form of a SQLAlchemy PostgreSQL URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


async def _start_servers(
    cfg: SoakConfig, stack: AsyncExitStack, workdir: Path
) -> list[RunningServer]:
    if cfg.database is None:
        database_url = f"sqlite+aiosqlite:///{workdir / 'streamchat.db'}"
    else:
        database_url = await stack.enter_async_context(postgres_database(_admin_url(cfg.database)))
    spec = _TetheredSpec(**vars(PEERS["streamchat"]))
    servers = []
    # One after the other: the first one migrates and seeds the database.
    for _ in range(cfg.servers):
        server = await stack.enter_async_context(
            start_server(spec, workdir / "logs", database_url=database_url, env=_server_env(cfg))
        )
        servers.append(server)
        _say(f"streamchat pid {server.pid} on 127.0.0.1:{server.port} ({database_url})")
    return servers


def _base_url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port}"


# -- users and rooms ---------------------------------------------------------------------


async def _pick_rooms(http: httpx.AsyncClient, count: int) -> list[str]:
    response = await http.get("/api/streamers")
    response.raise_for_status()
    logins = sorted(streamer["login"] for streamer in response.json())
    if len(logins) < count:
        raise SoakFailed(f"--rooms {count}: the server has only {len(logins)} streamers")
    return logins[:count]


async def _log_in(base_urls: list[str], clients: int) -> list[str]:
    tokens = [""] * clients
    limit = asyncio.Semaphore(16)

    async def one(index: int) -> None:
        async with limit:
            tokens[index] = await login(
                base_urls[index % len(base_urls)], f"{5_000_000_000 + index}", f"soak_{index}"
            )

    await asyncio.gather(*(one(index) for index in range(clients)))
    return tokens


# -- sampling ----------------------------------------------------------------------------


async def _sample_rss(
    servers: list[RunningServer], interval: float, series: list[list[tuple[float, int]]]
) -> None:
    started = time.monotonic()
    while True:
        elapsed = round(time.monotonic() - started, 1)
        for server, samples in zip(servers, series, strict=True):
            samples.append((elapsed, server.rss()))
        await asyncio.sleep(interval)


def rss_verdict(samples: list[tuple[float, int]], limit_percent: float) -> dict[str, Any]:
    """Compare the mean RSS of the last quarter of ``samples`` with the second quarter's.

    ``samples`` are ``(seconds, bytes)``. The slope after warm-up (a least-squares
    line through the last three quarters) is reported beside the verdict.
    """
    quarter = len(samples) // 4
    if quarter < 2:
        return {"ok": False, "reason": f"only {len(samples)} samples"}
    values = [rss for _, rss in samples]
    second = statistics.fmean(values[quarter : 2 * quarter])
    last = statistics.fmean(values[-quarter:])
    growth = 100 * (last - second) / second
    warm = samples[quarter:]
    slope, _ = statistics.linear_regression([t for t, _ in warm], [rss for _, rss in warm])
    return {
        "ok": growth <= limit_percent,
        "second_quarter_mib": round(second / 2**20, 1),
        "last_quarter_mib": round(last / 2**20, 1),
        "growth_percent": round(growth, 2),
        "limit_percent": limit_percent,
        "slope_mib_per_minute": round(slope * 60 / 2**20, 2),
        "min_mib": round(min(values) / 2**20, 1),
        "max_mib": round(max(values) / 2**20, 1),
    }


def _per_minute(samples: list[tuple[float, int]]) -> list[float]:
    """Mean RSS (MiB) of each minute of samples."""
    minutes: dict[int, list[int]] = {}
    for elapsed, rss in samples:
        minutes.setdefault(int(elapsed // 60), []).append(rss)
    return [round(statistics.fmean(values) / 2**20, 1) for _, values in sorted(minutes.items())]


# -- the run -----------------------------------------------------------------------------


class SoakFailed(RuntimeError):
    """The soak could not run to its checks (a server died, a client crashed, a limit)."""


async def _watch(
    seconds: float,
    servers: list[RunningServer],
    tasks: list[asyncio.Task[None]],
    progress: Callable[[float], None],
) -> None:
    """Let traffic run for ``seconds``, failing fast if a server or a client dies."""
    started = time.monotonic()
    next_report = 30.0
    while (elapsed := time.monotonic() - started) < seconds:
        await asyncio.sleep(min(1.0, seconds - elapsed))
        for server in servers:
            server.check_alive()
        for task in tasks:
            if task.done():
                raise SoakFailed(f"{task.get_name()} stopped: {task.exception()!r}")
        if time.monotonic() - started >= next_report:
            progress(time.monotonic() - started)
            next_report += 30.0


async def _wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _room_heads(http: httpx.AsyncClient, rooms: list[str]) -> dict[str, int]:
    heads = {}
    for room in rooms:
        response = await http.get(f"/api/rooms/{room}/messages", params={"limit": 1})
        response.raise_for_status()
        messages = response.json()["messages"]
        heads[room] = messages[-1]["seq"] if messages else 0
    return heads


Stored = dict[int, tuple[str, str]]


def _stored(message: dict[str, Any]) -> tuple[str, str]:
    return message["message_id"], str(message["text"]).split(" ", 1)[0]


async def _history_http(http: httpx.AsyncClient, room: str) -> Stored:
    stored: Stored = {}
    after = 0
    while True:
        response = await http.get(
            f"/api/rooms/{room}/messages", params={"after": after, "limit": _PAGE}
        )
        response.raise_for_status()
        messages = response.json()["messages"]
        for message in messages:
            stored[message["seq"]] = _stored(message)
        if len(messages) < _PAGE:
            return stored
        after = messages[-1]["seq"]


async def _history_ws(chat: ChatClient, room: str) -> Stored:
    stored: Stored = {}
    before: int | None = None
    while True:
        messages = await chat.history(room, before=before, limit=_PAGE)
        for message in messages:
            stored[message.seq] = (message.message_id, message.text.split(" ", 1)[0])
        if not messages or messages[0].seq <= 1:
            return stored
        before = messages[0].seq


@dataclass
class Check:
    name: str
    result: str
    ok: bool


class Soak:
    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.ledger = Ledger()
        self.chatters: list[Chatter] = []
        self.rooms: list[str] = []
        self.rss: list[list[tuple[float, int]]] = []
        self.cpu: list[float] = []
        self.client_cpu = 0.0
        self.traffic_seconds = 0.0
        self.drained = False
        self.heads: dict[str, int] = {}
        self.http_history: dict[str, Stored] = {}
        self.ws_history: dict[str, Stored] = {}

    async def run(self, servers: list[RunningServer]) -> None:
        cfg = self.cfg
        base_urls = [_base_url(server) for server in servers]
        rng = random.Random(cfg.seed)
        async with httpx.AsyncClient(base_url=base_urls[0], timeout=30.0) as http:
            self.rooms = await _pick_rooms(http, cfg.rooms)
            started = time.monotonic()
            tokens = await _log_in(base_urls, cfg.clients)
            took = time.monotonic() - started
            _say(f"{cfg.clients} users registered and logged in in {took:.1f} s")
            behaviour = Behaviour(
                rate=1 / cfg.message_interval,
                mean_connected=cfg.mean_connected,
                abort_share=cfg.abort_share,
            )
            for index, token in enumerate(tokens):
                count = rng.randint(1, min(cfg.rooms_per_client, len(self.rooms)))
                self.chatters.append(
                    Chatter(
                        index,
                        token,
                        base_urls,
                        rng.sample(self.rooms, count),
                        self.rooms,
                        behaviour,
                        self.ledger,
                        random.Random(rng.random()),
                    )
                )
            await self._traffic(servers, http)

    async def _traffic(self, servers: list[RunningServer], http: httpx.AsyncClient) -> None:
        cfg = self.cfg
        seconds = cfg.minutes * 60
        phases = Phases()
        self.rss = [[] for _ in servers]
        interval = min(cfg.rss_interval, seconds / 20)
        meters = [server.cpu() for server in servers]
        client_cpu = time.process_time()
        tasks = [
            asyncio.create_task(chatter.run(phases), name=f"client {chatter.index}")
            for chatter in self.chatters
        ]
        sampler = asyncio.create_task(_sample_rss(servers, interval, self.rss), name="RSS sampler")
        _say(
            f"traffic: {cfg.clients} clients, {len(self.rooms)} rooms, "
            f"{cfg.clients / cfg.message_interval:g} msg/s, "
            f"{cfg.minutes:g} min; RSS every {interval:g} s"
        )
        started = time.monotonic()
        try:
            await _watch(seconds, servers, tasks, self._progress)
            self.traffic_seconds = time.monotonic() - started
            self.cpu = [meter.percent() for meter in meters]
            self.client_cpu = 100 * (time.process_time() - client_cpu) / self.traffic_seconds
            sampler.cancel()
            phases.traffic_over.set()
            _say("traffic over: retrying what is unacked, reading to every room's end")
            drain_started = time.monotonic()
            deadline = drain_started + cfg.drain_timeout
            acked = await _wait_until(
                lambda: not any(chatter.pending for chatter in self.chatters), deadline
            )
            self.heads = await _room_heads(http, self.rooms)
            caught_up = await _wait_until(
                lambda: all(chatter.caught_up(self.heads) for chatter in self.chatters), deadline
            )
            self.drained = acked and caught_up
            drained_in = time.monotonic() - drain_started
            _say(f"drained: {'yes' if self.drained else 'no'} after {drained_in:.1f} s")
        finally:
            phases.traffic_over.set()
            phases.finished.set()
            sampler.cancel()
            _, stuck = await asyncio.wait([*tasks, sampler], timeout=30.0)
            for task in stuck:
                task.cancel()
            await asyncio.wait([*tasks, sampler])
        for task in [*tasks, sampler]:
            if not task.cancelled() and task.exception() is not None:
                raise SoakFailed(f"{task.get_name()} failed: {task.exception()!r}")
        try:
            async with asyncio.timeout(cfg.verify_timeout):
                await self._read_history(http, _base_url(servers[-1]))
        except TimeoutError:
            raise SoakFailed(f"history not read within {cfg.verify_timeout:g} s") from None

    async def _read_history(self, http: httpx.AsyncClient, ws_base: str) -> None:
        async with ChatClient.connect(ws_base, compression=None) as chat:
            for room in self.rooms:
                self.http_history[room] = await _history_http(http, room)
                self.ws_history[room] = await _history_ws(chat, room)

    def _progress(self, elapsed: float) -> None:
        online = sum(chatter.online for chatter in self.chatters)
        connections = sum(chatter.stats["connections"] for chatter in self.chatters)
        rss = " / ".join(f"{samples[-1][1] / 2**20:.1f}" for samples in self.rss if samples)
        _say(
            f"[{elapsed:5.0f} s] acked {len(self.ledger.acks):,}"
            f"  online {online}/{len(self.chatters)}  connections {connections:,}  RSS {rss} MiB"
        )

    # -- the checks ----------------------------------------------------------------------

    def results(self) -> tuple[list[Check], dict[str, Any]]:
        ledger = self.ledger
        acked = ledger.acked_by_room()
        acked_count = len(ledger.acks)
        stats: Counter[str] = Counter()
        views = Counter[str]()
        lost: list[str] = []
        expected = missing = 0
        for chatter in self.chatters:
            stats.update(chatter.stats)
            for room, view in chatter.views.items():
                audit = audit_view(view, acked.get(room, []), self.heads.get(room, 0))
                expected += audit.expected
                missing += audit.missing
                lost.extend(f"client {chatter.index} {room} seq {seq}" for seq in audit.lost_acked)
                views["received"] += view.received
                views["duplicates"] += view.duplicates
                views["out_of_order"] += view.out_of_order
                views["unexpected"] += view.unexpected
                views["recoveries"] += view.recoveries
                views["unrecovered"] += view.unrecovered
        unacked = sum(len(chatter.pending) for chatter in self.chatters)
        refused = sum(
            count
            for name, count in stats.items()
            if name.startswith("publish_errors_") and name != "publish_errors_unavailable"
        )
        by_key = {
            key: (record.room, record.seq, record.message_id) for key, record in ledger.acks.items()
        }
        history_checks = {
            label: _history_check(history, by_key, self.heads)
            for label, history in (("http", self.http_history), ("ws", self.ws_history))
        }
        http_check, ws_check = history_checks["http"], history_checks["ws"]
        rss = [rss_verdict(samples, self.cfg.rss_growth) for samples in self.rss]
        inconsistent = len(ledger.conflicts) + ledger.mismatches + ledger.delivery_disagreements()
        checks = [
            Check(
                "messages acknowledged",
                f"{acked_count:,} of {ledger.created:,} ({unacked} unacked, {refused} refused)",
                acked_count == ledger.created and unacked == 0 and refused == 0,
            ),
            Check(
                "lost acknowledged messages",
                f"{len(lost):,} (of {expected:,} deliveries due)",
                not lost,
            ),
            Check("seq skipped within a subscription", f"{missing:,}", missing == 0),
            Check("duplicates", f"{views['duplicates']:,}", views["duplicates"] == 0),
            Check(
                "out of order / outside a subscription",
                f"{views['out_of_order']:,} / {views['unexpected']:,}",
                views["out_of_order"] == 0 and views["unexpected"] == 0,
            ),
            Check(
                "acked messages in history (GET /api/rooms/…/messages)",
                http_check["summary"],
                http_check["ok"],
            ),
            Check(
                "acked messages in history (`history` request)", ws_check["summary"], ws_check["ok"]
            ),
            Check(
                "acks and deliveries agree",
                f"{inconsistent} disagreements",
                inconsistent == 0,
            ),
            Check(
                "resubscriptions with `since` recovered",
                f"{views['recoveries']:,} of {views['recoveries'] + views['unrecovered']:,}",
                views["unrecovered"] == 0,
            ),
            Check(
                "drain: every ack in, every client at every room's end",
                f"{'yes' if self.drained else 'no'} (limit {self.cfg.drain_timeout:g} s)",
                self.drained,
            ),
        ]
        for index, verdict in enumerate(rss):
            name = "server RSS flat after warm-up" + (
                f" (server {index + 1})" if len(rss) > 1 else ""
            )
            if "reason" in verdict:
                checks.append(Check(name, verdict["reason"], False))
                continue
            checks.append(
                Check(
                    name,
                    f"{verdict['second_quarter_mib']} → {verdict['last_quarter_mib']} MiB "
                    f"({verdict['growth_percent']:+.1f} %, limit +{verdict['limit_percent']:g} %; "
                    f"after warm-up {verdict['slope_mib_per_minute']:+.2f} MiB/min)",
                    verdict["ok"],
                )
            )
        deliveries = percentiles(ledger.deliver_ms, LATENCY_POINTS)
        acks = percentiles(ledger.ack_ms, LATENCY_POINTS)
        report: dict[str, Any] = {
            "config": asdict(self.cfg),
            "rooms": self.rooms,
            "traffic_seconds": round(self.traffic_seconds, 1),
            "checks": [asdict(check) for check in checks],
            "ok": all(check.ok for check in checks),
            "messages": {
                "sent": ledger.created,
                "acked": acked_count,
                "attempts": ledger.attempts,
                "unacked": unacked,
                "stored": sum(len(history) for history in self.http_history.values()),
                "room_heads": self.heads,
            },
            "deliveries": {
                "due": expected,
                "received": views["received"],
                "live_measured": deliveries.get("count", 0),
                "lost_acked": lost[:100],
                "missing": missing,
                "duplicates": views["duplicates"],
                "out_of_order": views["out_of_order"],
                "unexpected": views["unexpected"],
            },
            "history": history_checks,
            "conflicts": ledger.conflicts[:100],
            "latency_ms": {"deliver": deliveries, "ack": acks},
            "clients": dict(sorted(stats.items())),
            "recoveries": views["recoveries"],
            "unrecovered": views["unrecovered"],
            "server_cpu_percent": [round(cpu, 1) for cpu in self.cpu],
            "soak_process_cpu_percent": round(self.client_cpu, 1),
            "rss": [
                {
                    "verdict": verdict,
                    "per_minute_mib": _per_minute(samples),
                    "samples": [[elapsed, round(rss / 2**20, 2)] for elapsed, rss in samples],
                }
                for verdict, samples in zip(rss, self.rss, strict=True)
            ],
            "last_errors": sorted({c.last_error for c in self.chatters if c.last_error})[:20],
        }
        return checks, report


def _history_check(
    history: dict[str, Stored],
    acked: dict[str, tuple[str, int, str]],
    heads: dict[str, int],
) -> dict[str, Any]:
    """Every acked message stored once where its ack says; numbering without gaps."""
    found = wrong = 0
    missing: list[str] = []
    for key, (room, seq, message_id) in acked.items():
        stored = history.get(room, {}).get(seq)
        if stored is None:
            missing.append(f"{room} seq {seq}")
        elif stored != (message_id, key):
            wrong += 1
        else:
            found += 1
    holes = {
        room: heads.get(room, 0) - len(stored)
        for room, stored in history.items()
        if set(stored) != set(range(1, heads.get(room, 0) + 1))
    }
    keys = {key for stored in history.values() for _, key in stored.values()}
    stored_not_acked = len(keys - acked.keys())
    ok = not missing and wrong == 0 and not holes and stored_not_acked == 0
    summary = f"{found:,} of {len(acked):,}"
    if wrong or holes or stored_not_acked:
        summary += f" ({wrong} differ, numbering off in {len(holes)} rooms, "
        summary += f"{stored_not_acked} stored but never acked)"
    return {
        "ok": ok,
        "summary": summary,
        "found": found,
        "missing": missing[:100],
        "different": wrong,
        "numbering_off": holes,
        "stored_not_acked": stored_not_acked,
    }


# -- the report --------------------------------------------------------------------------


def render(checks: list[Check], report: dict[str, Any]) -> str:
    cfg = report["config"]
    setup = (
        f"{cfg['servers']} x streamchat, {'PostgreSQL' if cfg['database'] else 'SQLite'}, "
        f"broker {cfg['broker']}"
    )
    lines = [
        f"## Soak: {cfg['clients']} clients, {cfg['rooms']} rooms, {cfg['minutes']:g} min "
        f"({setup})",
        "",
        "| check | result | |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c.name} | {c.result} | {'pass' if c.ok else '**FAIL**'} |" for c in checks]
    deliver, ack = report["latency_ms"]["deliver"], report["latency_ms"]["ack"]
    stats = report["clients"]
    messages = report["messages"]
    server_closes = {
        name.removeprefix("closed_by_server_"): count
        for name, count in stats.items()
        if name.startswith("closed_by_server_")
    }
    rows = [
        (
            "traffic",
            f"{report['traffic_seconds']:g} s, a message every {cfg['message_interval']:g} s "
            f"per client: {cfg['clients'] / cfg['message_interval']:g} msg/s offered",
        ),
        (
            "messages",
            f"{messages['acked']:,} acked, {messages['stored']:,} stored, "
            f"{messages['attempts'] - messages['sent']:,} publishes sent again with their nonce",
        ),
        (
            "deliveries",
            f"{report['deliveries']['received']:,} received of {report['deliveries']['due']:,} due"
            f" ({report['deliveries']['live_measured']:,} live, timed)",
        ),
        (
            "connections",
            f"{stats.get('connections', 0):,}: {stats.get('closes', 0):,} closed and "
            f"{stats.get('aborts', 0):,} cut by clients, "
            f"{sum(server_closes.values()):,} by the server{_codes(server_closes)}; "
            f"{stats.get('connect_failures', 0):,} failed handshakes; "
            f"{stats.get('room_switches', 0):,} room switches",
        ),
        ("publish → deliver (ms)", _latency(deliver)),
        ("publish → ack (ms)", _latency(ack)),
        (
            "CPU (% of a core)",
            f"server {' / '.join(f'{cpu:g}' for cpu in report['server_cpu_percent'])}, "
            f"soak clients {report['soak_process_cpu_percent']:g}",
        ),
    ]
    for index, rss in enumerate(report["rss"]):
        label = "server RSS per minute (MiB)" + (
            f", server {index + 1}" if len(report["rss"]) > 1 else ""
        )
        rows.append((label, " ".join(f"{value:g}" for value in rss["per_minute_mib"])))
    lines += ["", "| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += [
        "",
        f"RSS verdict: mean of the last quarter of the samples against the second quarter's, "
        f"at most +{cfg['rss_growth']:g} %.",
        "",
        f"**Soak {'passed' if report['ok'] else 'FAILED'}.**",
    ]
    return "\n".join(lines)


def _codes(closes: dict[str, int]) -> str:
    if not closes:
        return ""
    return " (" + ", ".join(f"{code}: {count}" for code, count in sorted(closes.items())) + ")"


def _latency(values: dict[str, float]) -> str:
    if not values.get("count"):
        return "no samples"
    return (
        f"p50 {values['p50']:g} · p90 {values['p90']:g} · p99 {values['p99']:g} · "
        f"p99.9 {values['p99.9']:g} · max {values['max']:g} ({values['count']:,} samples)"
    )


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- main --------------------------------------------------------------------------------


async def soak(cfg: SoakConfig) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, main.cancel)
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="streamchat-soak-"))
    started_at = datetime.now(UTC).replace(microsecond=0)
    # Start-up and log-in, traffic, drain, history: each bounded; this bounds them all.
    budget = 180 + cfg.minutes * 60 + cfg.drain_timeout + 30 + cfg.verify_timeout
    run = Soak(cfg)
    keep = True
    try:
        try:
            async with asyncio.timeout(budget), AsyncExitStack() as stack:
                servers = await _start_servers(cfg, stack, workdir)
                await run.run(servers)
        except (RuntimeError, httpx.HTTPError, OSError) as exc:
            _say(f"soak failed: {type(exc).__name__}: {exc}")
            return 1
        except TimeoutError as exc:
            _say(f"soak failed: {str(exc) or f'it overran its time limit of {budget:.0f} s'}")
            return 1
        except asyncio.CancelledError:
            keep = False
            raise
        checks, report = run.results()
        report["started"] = started_at.isoformat()
        print(render(checks, report), flush=True)
        if cfg.out:
            out = Path(cfg.out)
            await asyncio.to_thread(_write_json, out, report)
            _say(f"results: {out}")
        keep = not report["ok"]
        return 0 if report["ok"] else 1
    finally:
        if keep:
            _say(f"server logs kept in {workdir / 'logs'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(soak(cfg))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("soak interrupted; its servers are stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
