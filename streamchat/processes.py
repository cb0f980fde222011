"""``streamchat serve --workers N``: N server processes on one port, for a multi-core host.

Each process binds the port with ``SO_REUSEPORT``, so the kernel spreads new
connections over them, and runs the whole app: they share the database and a
cross-process broker exactly as processes on several machines do (which is why
``memory://`` is refused). The parent only watches: it starts the processes,
starts again one that dies, and on SIGINT or SIGTERM stops them all (each
closes its connections with 1001, as a lone server does).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from typing import Any

from streamchat.config import Settings

__all__ = ["MAX_PROCESSES", "bind_reuse_port", "refuse_processes", "serve_processes"]

log = logging.getLogger("streamchat")

MAX_PROCESSES = 64
#: A process that dies sooner than this after starting is not started again at once.
_CRASH_LOOP = 5.0
_STOP_GRACE = 30.0


def refuse_processes(settings: Settings, count: int) -> str | None:
    """Why ``count`` processes cannot share these settings, or ``None``."""
    if count < 1 or count > MAX_PROCESSES:
        return f"--workers takes 1 to {MAX_PROCESSES} processes, not {count}"
    if count > 1 and settings.broker_url.startswith("memory:"):
        return (
            f"--workers {count} runs {count} processes, and the memory:// broker cannot join "
            "them: a message published in one would never reach the others' clients. Set "
            "STREAMCHAT_BROKER_URL to redis://, nats:// or postgresql:// (README, "
            '"Deployment on several nodes")'
        )
    return None


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _serve_one(settings: Settings, index: int) -> None:
    """One server process (the target of each child)."""
    import uvicorn

    from streamchat.app import create_app, server_options
    from streamchat.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    # Ctrl-C reaches the whole process group: the parent decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = bind_reuse_port(settings.host, settings.port)
    options: dict[str, Any] = server_options(settings)
    del options["host"], options["port"]
    config = uvicorn.Config(create_app(settings), log_config=None, **options)
    log.info(
        "server process %d (pid %d) listening on %s:%d",
        index,
        os.getpid(),
        settings.host,
        settings.port,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve_processes(settings: Settings, count: int) -> int:
    """Run ``count`` server processes until SIGINT or SIGTERM; return the exit status."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Held while the children start: the port is taken, and nobody else gets it.
    guard = bind_reuse_port(settings.host, settings.port)
    children: dict[int, tuple[BaseProcess, float]] = {}

    def start(index: int) -> None:
        child = context.Process(
            target=_serve_one, args=(settings, index), name=f"streamchat-{index}", daemon=False
        )
        child.start()
        children[index] = (child, time.monotonic())

    try:
        for index in range(count):
            start(index)
        guard.close()
        log.info("%d server processes on %s:%d", count, settings.host, settings.port)
        while not stopping:
            time.sleep(0.2)
            for index, (child, started) in list(children.items()):
                if child.is_alive() or stopping:
                    continue
                log.error(
                    "server process %d (pid %s) exited with %s", index, child.pid, child.exitcode
                )
                if time.monotonic() - started < _CRASH_LOOP:
                    # Dying at start (a bad setting, the database down): do not spin.
                    time.sleep(_CRASH_LOOP)
                if not stopping:
                    start(index)
    finally:
        guard.close()
        for child, _ in children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        for child, _ in children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
