"""Installs what the benchmark runs besides streamchat, each into a bench-local folder.

- ``bench/loadgen/node_modules`` and ``bench/peers/socketio/node_modules``:
  ``npm ci`` from the committed lock files;
- ``bench/.peers/venv``: python-socketio, aiohttp and uvicorn from
  ``bench/requirements-peers.txt``, never in the project's ``.venv``.

Each install is skipped while its stamp is newer than what it was made from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["BENCH", "LOADGEN", "PEERS_VENV", "ensure_loadgen", "ensure_peers", "peer_python"]

BENCH = Path(__file__).resolve().parents[1]
LOADGEN = BENCH / "loadgen"
SOCKETIO = BENCH / "peers" / "socketio"
PEERS_VENV = BENCH / ".peers" / "venv"
REQUIREMENTS = BENCH / "requirements-peers.txt"


class InstallError(RuntimeError):
    """A tool the benchmark needs is missing or its install failed."""


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(
            f"{' '.join(command)} failed in {cwd} ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


def _stale(stamp: Path, *sources: Path) -> bool:
    if not stamp.exists():
        return True
    built = stamp.stat().st_mtime
    return any(source.stat().st_mtime > built for source in sources)


def _npm_ci(folder: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise InstallError("node and npm are required (Node 20+): install them first")
    # npm writes node_modules/.package-lock.json on every install.
    if _stale(folder / "node_modules" / ".package-lock.json", folder / "package-lock.json"):
        print(f"installing {folder.relative_to(BENCH.parent)} (npm ci)", file=sys.stderr)
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], folder)


def ensure_loadgen() -> None:
    """The Node load generator's dependencies."""
    _npm_ci(LOADGEN)


def peer_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_peers(servers: tuple[str, ...]) -> None:
    """The peers among ``servers``: Socket.IO from npm, the Python ones in their own venv."""
    if "socketio" in servers:
        _npm_ci(SOCKETIO)
    if {"pysocketio", "aiohttp"} & set(servers):
        stamp = PEERS_VENV / ".installed"
        if _stale(stamp, REQUIREMENTS):
            print("installing bench/.peers/venv (pip)", file=sys.stderr)
            if not peer_python().exists():
                _run([sys.executable, "-m", "venv", str(PEERS_VENV)], BENCH)
            _run(
                [str(peer_python()), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
                BENCH,
            )
            stamp.touch()
