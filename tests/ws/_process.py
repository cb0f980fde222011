"""`streamchat serve` and `streamchat worker` as real child processes, which a test may kill -9.

Every test that runs a server in a process of its own starts it here: a :class:`ServerSet`
makes the servers (and workers), each server on a loopback port reserved for it (see
:func:`reserve_port`), and stops whatever is still running when the test is done.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.helpers import wait_for

__all__ = ["ChildProcess", "ServerProcess", "ServerSet", "reserve_port"]


def reserve_port(*, reuse_port: bool = False) -> socket.socket:
    """A loopback port that is ours for as long as the returned socket stays open.

    The socket is bound with SO_REUSEADDR and never listens. So nobody else is handed the
    port (binding it, or port 0, passes it over, and so do outgoing connections), a
    connection to it is refused, and yet a server told its number can bind and listen on
    it, since asyncio's servers (uvicorn's included) set SO_REUSEADDR too. Unlike binding
    port 0, closing, and passing the number on, nothing can take the port in between; and
    a server killed -9 starts again on the same port.
    """
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # For servers that bind with SO_REUSEPORT (``serve --workers``): all must.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


class ChildProcess:
    """One ``streamchat ...`` child process; each start writes a log file of its own."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self._args = list(args)
        self._env = dict(env)
        self._logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        #: One file per start, oldest first.
        self.log_files: list[Path] = []
        #: Whether the latest start ended in :meth:`kill`.
        self.killed = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    def log(self) -> str:
        """What the latest start has written."""
        return self.log_files[-1].read_text(errors="replace") if self.log_files else ""

    def spawn(self) -> None:
        """Start the process (again: same arguments, same settings) without waiting for it."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        log_file = self._logs / f"{self.name}.{len(self.log_files)}.log"
        self.log_files.append(log_file)
        self.killed = False
        with log_file.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamchat", *self._args],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: the process runs no code of its own on the way down."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.killed = True

    def terminate(self) -> None:
        """SIGTERM, if it is running; :meth:`wait_stopped` waits for the exit."""
        self._signal(signal.SIGTERM)

    def interrupt(self) -> None:
        """SIGINT (Ctrl-C), if it is running; :meth:`wait_stopped` waits for the exit."""
        self._signal(signal.SIGINT)

    def _signal(self, signum: signal.Signals) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def wait_stopped(self, wait: float) -> int | None:
        """Wait for the exit, then SIGKILL what is still running; the exit status."""
        if self.process is None:
            return None
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode


class ServerProcess(ChildProcess):
    """One ``streamchat serve`` on a loopback port reserved for it while the test runs.

    The port goes on the command line (``--port``), or with ``port_flag=False`` in
    ``STREAMCHAT_PORT``, for a test of the environment.
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        logs: Path,
        args: Sequence[str] = (),
        *,
        port_flag: bool = True,
        reuse_port: bool = False,
    ) -> None:
        self._reservation = reserve_port(reuse_port=reuse_port)
        self.port: int = self._reservation.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if port_flag:
            command = ["serve", "--port", str(self.port), *args]
        else:
            command = ["serve", *args]
            env = {**env, "STREAMCHAT_PORT": str(self.port)}
        super().__init__(name, command, env, logs)

    async def start(self, wait: float = 30.0) -> None:
        """Start (again: same port, same settings, same data) and wait until /readyz is 200."""
        self.spawn()
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as http:

            async def ready() -> bool:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited while starting:\n{self.log()}")
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await wait_for(ready, wait, interval=0.05)
            except TimeoutError:
                raise RuntimeError(
                    f"{self.name} not ready within {wait:g} s:\n{self.log()}"
                ) from None

    def close(self) -> None:
        """Give the port up (once the server has stopped)."""
        self._reservation.close()


class ServerSet:
    """Servers and workers made by :meth:`add` and :meth:`add_worker`; leaving the ``with``
    block stops every one still running and gives the servers' ports up.

    The children inherit the environment without its ``STREAMCHAT_*`` variables, so only
    the settings given here configure them.
    """

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._base = {
            key: value for key, value in os.environ.items() if not key.startswith("STREAMCHAT_")
        }
        self.processes: list[ChildProcess] = []

    def add(
        self,
        name: str,
        settings: Mapping[str, str],
        *args: str,
        port_flag: bool = True,
        reuse_port: bool = False,
    ) -> ServerProcess:
        """A server (not started yet), with ``args`` after ``streamchat serve``."""
        server = ServerProcess(
            name,
            {**self._base, **settings},
            self._logs,
            args,
            port_flag=port_flag,
            reuse_port=reuse_port,
        )
        self.processes.append(server)
        return server

    def add_worker(self, name: str, settings: Mapping[str, str]) -> ChildProcess:
        """A ``streamchat worker`` (not started yet: :meth:`ChildProcess.spawn`)."""
        worker = ChildProcess(name, ["worker"], {**self._base, **settings}, self._logs)
        self.processes.append(worker)
        return worker

    def __enter__(self) -> ServerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in self.processes:
            child.terminate()
        for child in self.processes:
            child.wait_stopped(15)
            if isinstance(child, ServerProcess):
                child.close()
