"""CPU and memory of a process, and of the whole machine, read from ``/proc``."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import time
from dataclasses import dataclass

__all__ = ["CpuMeter", "MachineMeter", "machine_info", "rss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields after it are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) of every CPU since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / _TICKS, total / _TICKS


@dataclass
class CpuMeter:
    """CPU use of one process between :meth:`start` and :meth:`percent` (100 = one core)."""

    pid: int
    _cpu: float = 0.0
    _wall: float = 0.0

    def start(self) -> None:
        self._cpu = cpu_seconds(self.pid)
        self._wall = time.monotonic()

    def seconds(self) -> float:
        return cpu_seconds(self.pid) - self._cpu

    def percent(self) -> float:
        wall = time.monotonic() - self._wall
        return 100 * self.seconds() / wall if wall > 0 else 0.0


@dataclass
class MachineMeter:
    """Busy CPU of the whole machine over an interval, in cores x 100."""

    _busy: float = 0.0
    _wall: float = 0.0

    def start(self) -> None:
        self._busy, _ = _machine_busy()
        self._wall = time.monotonic()

    def seconds(self) -> float:
        return _machine_busy()[0] - self._busy

    def percent(self) -> float:
        wall = time.monotonic() - self._wall
        return 100 * self.seconds() / wall if wall > 0 else 0.0

    @staticmethod
    async def sample(seconds: float) -> float:
        meter = MachineMeter()
        meter.start()
        await asyncio.sleep(seconds)
        return meter.percent()


def machine_info() -> dict[str, object]:
    """What a reader needs to compare figures: CPU, cores, memory, kernel, runtimes."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        node = "not found"
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
    }
