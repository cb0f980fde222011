"""Driving the Node load generator (``bench/loadgen``) from the orchestrator.

The load generator reads a JSON spec, reports progress as JSON lines on stdout
(``connected``, ``ready``, ``publish_start``, ``publish_end``, ``result`` or
``error``) and takes commands on stdin (``go``, ``close``). A section passes an
event handler that samples the server at those moments and answers with the
next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness.install import LOADGEN
from harness.servers import stop_process

__all__ = ["EventHandler", "LoadgenError", "raise_fd_limit", "run_loadgen"]

#: Called with (process id, event name, event fields); returns a command to send, or None.
EventHandler = Callable[[int, str, dict[str, Any]], Awaitable[str | None]]


class LoadgenError(RuntimeError):
    """The load generator reported an error or ended without a result."""


def raise_fd_limit() -> int:
    """Let this process and its children (servers, load generator) open many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _write_spec(spec: dict[str, Any], logs: Path) -> Path:
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix=f"loadgen-{spec['scenario']}-", dir=logs, delete=False
    ) as spec_file:
        json.dump(spec, spec_file)
    return Path(spec_file.name)


async def _default_handler(_pid: int, event: str, _fields: dict[str, Any]) -> str | None:
    return "go" if event == "ready" else None


async def run_loadgen(
    spec: dict[str, Any],
    logs: Path,
    *,
    on_event: EventHandler = _default_handler,
    deadline: float = 300.0,
) -> dict[str, Any]:
    """Run one scenario to its end (at most ``deadline`` seconds) and return its result."""
    spec_path = _write_spec({"deadline_s": deadline, **spec}, logs)
    stderr_path = spec_path.with_suffix(".stderr")
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(LOADGEN / "src" / "main.js"),
            str(spec_path),
            cwd=LOADGEN,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    assert process.stdin is not None
    assert process.stdout is not None
    result: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(deadline + 30):
            async for raw in process.stdout:
                fields = json.loads(raw)
                event = fields.pop("event")
                if event == "error":
                    raise LoadgenError(
                        f"load generator: {fields.get('message')} {fields.get('failures', '')}"
                    )
                if event == "result":
                    result = fields
                command = await on_event(process.pid, event, fields)
                if command is not None:
                    process.stdin.write(f"{command}\n".encode())
                    await process.stdin.drain()
            await process.wait()
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        await stop_process(process, grace=2.0)
    if result is None:
        raise LoadgenError(
            f"load generator exited with {process.returncode} and no result; "
            f"see {stderr_path}:\n{stderr_path.read_text()[-2000:]}"
        )
    return result
