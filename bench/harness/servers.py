"""Starting and stopping the servers under test: streamchat and its peers.

Each server runs as its own process (in its own process group, so stopping it
takes any children too) on a free loopback port, with its output in a log
file. :class:`RunningServer` knows its pid, so sections can read its CPU and
memory from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.install import BENCH, SOCKETIO, peer_python
from harness.procfs import CpuMeter, rss_bytes

__all__ = ["PEERS", "RunningServer", "ServerSpec", "free_port", "profiled", "start_server"]

ROOT = BENCH.parent


@dataclass(frozen=True)
class ServerSpec:
    """How to start one kind of server and how the load generator talks to it."""

    name: str
    label: str
    protocol: str  # "json" or "socketio", as in bench/loadgen/src/protocols.js
    path: str  # the WebSocket URL's path and query
    authenticated: bool
    persisted: bool

    def command(self) -> list[str]:
        match self.name:
            case "streamchat":
                return [str(ROOT / ".venv" / "bin" / "streamchat"), "serve"]
            case "socketio":
                return ["node", str(SOCKETIO / "server.js")]
            case "pysocketio":
                return [str(peer_python()), str(BENCH / "peers" / "pysocketio" / "server.py")]
            case "aiohttp":
                return [str(peer_python()), str(BENCH / "peers" / "aiohttp_broadcast.py")]
        raise ValueError(f"unknown server {self.name!r}")


PEERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("streamchat", "streamchat", "json", "/ws", authenticated=True, persisted=True),
        ServerSpec(
            "socketio",
            "Node Socket.IO 4",
            "socketio",
            "/socket.io/?EIO=4&transport=websocket",
            authenticated=False,
            persisted=False,
        ),
        ServerSpec(
            "pysocketio",
            "python-socketio 5",
            "socketio",
            "/socket.io/?EIO=4&transport=websocket",
            authenticated=False,
            persisted=False,
        ),
        ServerSpec(
            "aiohttp", "bare aiohttp loop", "json", "/ws", authenticated=False, persisted=False
        ),
    )
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    spec: ServerSpec
    process: asyncio.subprocess.Process
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.spec.path}"

    def rss(self) -> int:
        self.check_alive()
        return rss_bytes(self.pid)

    def cpu(self) -> CpuMeter:
        self.check_alive()
        meter = CpuMeter(self.pid)
        meter.start()
        return meter

    def check_alive(self) -> None:
        """Raise, with the end of its log, if the server has exited."""
        if self.alive() and Path(f"/proc/{self.pid}").exists():
            return
        code = self.process.returncode
        how = (
            f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
        )
        raise RuntimeError(
            f"{self.spec.name} (pid {self.pid}) {how}; {self.log}:\n{self.log.read_text()[-2000:]}"
        )

    def alive(self) -> bool:
        return self.process.returncode is None

    async def wait_idle(
        self, *, below: float = 5.0, window: float = 0.25, limit: float = 60.0
    ) -> float:
        """Wait until the server's CPU is under ``below`` % over ``window``; return the wait."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            meter = self.cpu()
            await asyncio.sleep(window)
            try:
                busy = meter.percent()
            except OSError:
                await self._reaped()
                raise
            if busy < below:
                break
        return time.monotonic() - started

    async def _reaped(self) -> None:
        """Give asyncio a moment to collect an exited server, then say how it ended."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2.0)
        self.check_alive()


async def _wait_ready(server: RunningServer, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(
                f"{server.spec.name} exited with {server.process.returncode}; "
                f"see {server.log}:\n{server.log.read_text()[-3000:]}"
            )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        ready = True
        if server.spec.name == "streamchat":
            # /readyz answers 200 once the database is reachable and the app has started.
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            ready = b" 200 " in status
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if ready:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{server.spec.name} did not become ready in {limit:.0f} s")


def _log_path(logs: Path, name: str) -> Path:
    logs.mkdir(parents=True, exist_ok=True)
    return logs / name


@asynccontextmanager
async def start_server(
    spec: ServerSpec,
    logs: Path,
    *,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    ready_limit: float = 60.0,
) -> AsyncIterator[RunningServer]:
    """Run ``spec`` on a free port until the block ends."""
    port = free_port()
    child_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    extra: dict[str, str] = {}
    if spec.name == "streamchat":
        if database_url is None:
            raise ValueError("streamchat needs a database URL")
        extra = {
            "STREAMCHAT_HOST": "127.0.0.1",
            "STREAMCHAT_PORT": str(port),
            "STREAMCHAT_DATABASE_URL": database_url,
            "STREAMCHAT_RATE_LIMIT": "off",
            "STREAMCHAT_LOG_LEVEL": "warning",
            "STREAMCHAT_SEED_SAMPLE_DATA": "true",
            # Stream status events would add deliveries the peers have no counterpart of.
            "STREAMCHAT_RUN_SINGLETONS": "false",
            # Every simulated client comes from 127.0.0.1.
            "STREAMCHAT_MAX_CONNECTIONS_PER_IP": "1000000",
        }
    extra.update(env or {})
    child_env.update(extra)
    log = _log_path(logs, f"{spec.name}-{port}.log")
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *spec.command(),
            cwd=ROOT,
            env=child_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(spec, process, port, log, extra)
    try:
        await _wait_ready(server, ready_limit)
        yield server
    finally:
        await stop_process(process)


@asynccontextmanager
async def profiled(server: RunningServer, out: Path) -> AsyncIterator[None]:
    """Sample ``server`` with py-spy while the block runs; raw stacks go to ``out``.

    Each line of ``out`` is a stack (thread first, ``;``-separated) and its
    sample count: the input of flamegraph.pl, or of a few lines of Python.
    """
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(ROOT / ".venv" / "bin"))
    if py_spy is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    process = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(server.pid),
        "--rate",
        "200",
        "--threads",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        # py-spy writes its file when interrupted.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
        print(f"  profile: {out}", file=sys.stderr)


async def stop_process(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if process.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), grace)
            return
        except TimeoutError:
            print(f"process {process.pid} ignored {sig.name}", file=sys.stderr)
