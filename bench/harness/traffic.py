"""One traffic run: subscribers in rooms, publishers at a fixed rate, the server watched.

The load generator connects and subscribes everyone, then reports ``ready``;
the orchestrator waits for the server to go idle (subscribing announces joins,
which take a while to fan out), then says ``go``. Between ``publish_start``
and ``publish_end`` it measures the server's CPU, the machine's (to tell when
something else ran at the same time) and, if asked, samples the server's RSS
until the result arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.accounts import Accounts
from harness.config import BenchConfig
from harness.loadgen import run_loadgen
from harness.procfs import CpuMeter, MachineMeter
from harness.servers import RunningServer

__all__ = ["Traffic", "run_traffic"]


@dataclass(frozen=True)
class Traffic:
    """What to send: who listens where, and how fast messages come."""

    rooms: list[str]
    subscribers_per_room: int
    publishers_per_room: int
    rate: float
    seconds: float
    warmup: float
    drain: float
    text_bytes: int
    stalled: int = 0
    stalled_wait: float = 15.0
    sample_rss: bool = False


async def run_traffic(
    server: RunningServer,
    traffic: Traffic,
    cfg: BenchConfig,
    accounts: Accounts | None,
    logs: Path,
) -> dict[str, Any]:
    """Run ``traffic`` against ``server``; the load generator's result plus server figures."""
    spec: dict[str, Any] = {
        "scenario": "traffic",
        "url": server.url,
        "protocol": server.spec.protocol,
        "transport": cfg.transport,
        "tokens_file": str(accounts.path) if accounts and server.spec.authenticated else None,
        "rooms": traffic.rooms,
        "subscribers_per_room": traffic.subscribers_per_room,
        "publishers_per_room": traffic.publishers_per_room,
        "rate": traffic.rate,
        "warmup_s": traffic.warmup,
        "duration_s": traffic.seconds,
        "drain_s": traffic.drain,
        "text_bytes": traffic.text_bytes,
        "slow": traffic.stalled,
        "slow_wait_s": traffic.stalled_wait,
        "source_ips": cfg.source_ips,
    }
    figures: dict[str, Any] = {}
    meters: dict[str, Any] = {}
    rss_samples: list[int] = []
    sampler: asyncio.Task[None] | None = None

    async def sample_rss() -> None:
        while True:
            with contextlib.suppress(OSError, RuntimeError):
                rss_samples.append(server.rss())
            await asyncio.sleep(0.2)

    async def on_event(pid: int, event: str, fields: dict[str, Any]) -> str | None:
        nonlocal sampler
        if event == "connected":
            figures["connect_seconds"] = fields["seconds"]
        elif event == "ready":
            figures["settle_seconds"] = round(await server.wait_idle(), 2)
            figures["rss_before"] = server.rss()
            return "go"
        elif event == "publish_start":
            meters["server"] = server.cpu()
            meters["loadgen"] = CpuMeter(pid)
            meters["loadgen"].start()
            meters["machine"] = MachineMeter()
            meters["machine"].start()
            if traffic.sample_rss:
                sampler = asyncio.create_task(sample_rss())
        elif event == "publish_end":
            server_cpu = meters["server"].percent()
            loadgen_cpu = meters["loadgen"].percent()
            figures["server_cpu_percent"] = round(server_cpu, 1)
            # Whatever else ran on the machine meanwhile: a noisy neighbour skews the figures.
            figures["other_cpu_percent"] = round(
                max(0.0, meters["machine"].percent() - server_cpu - loadgen_cpu), 1
            )
        elif event == "result" and sampler is not None:
            sampler.cancel()
        return None

    try:
        result = await run_loadgen(
            spec, logs, on_event=on_event, deadline=traffic_deadline(traffic)
        )
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    result.update(figures)
    if rss_samples:
        result["rss_max"] = max(rss_samples)
        result["rss_samples"] = len(rss_samples)
    with contextlib.suppress(OSError, RuntimeError):
        result["rss_after"] = server.rss()
    return result


def traffic_deadline(traffic: Traffic) -> float:
    """A generous bound on one run: connecting, settling, publishing, draining, slow clients."""
    return 120.0 + traffic.warmup + traffic.seconds + traffic.drain + 20.0
