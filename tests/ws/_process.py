"""`streamchat serve` as real child processes on loopback ports, which a test may kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServerProcess", "ServerSet", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One `streamchat serve` on a fixed port; each start logs to a file of its own."""

    def __init__(self, name: str, env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = dict(env)
        self._logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        #: One file per start, oldest first.
        self.log_files: list[Path] = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the latest start has written."""
        return self.log_files[-1].read_text(errors="replace") if self.log_files else ""

    async def start(self, wait: float = 30.0) -> None:
        """Start (again: same port, same settings, same data) and wait until /readyz is 200."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._spawn()
        deadline = time.monotonic() + wait
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited while starting:\n{self.log()}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {wait:g} s:\n{self.log()}")

    def _spawn(self) -> None:
        log_file = self._logs / f"{self.name}.{len(self.log_files)}.log"
        self.log_files.append(log_file)
        with log_file.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamchat", "serve", "--port", str(self.port)],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: the server runs no code of its own on the way down."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, wait: float) -> None:
        """Wait for the exit, then SIGKILL what is still running."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ServerSet:
    """Servers made by :meth:`add`; leaving the ``with`` block stops every one still running.

    The children inherit the environment without its ``STREAMCHAT_*`` variables, so only
    the settings given here configure them.
    """

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._base = {
            key: value for key, value in os.environ.items() if not key.startswith("STREAMCHAT_")
        }
        self.servers: list[ServerProcess] = []

    def add(self, name: str, settings: Mapping[str, str]) -> ServerProcess:
        server = ServerProcess(name, {**self._base, **settings}, self._logs)
        self.servers.append(server)
        return server

    def __enter__(self) -> ServerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.wait_stopped(15)
