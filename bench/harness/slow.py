"""5. Clients that stop reading: the others must not notice, and the server must stay bounded.

``slow_clients`` subscribers in one room; a publisher sends large-ish messages
at a moderate rate. The run is done twice on the same server: once with
everyone reading (the baseline, ``slow_baseline_seconds``), once with
``slow_stalled`` of them paused (their sockets stop reading right after
subscribing) for ``slow_seconds``, long enough for the kernel's socket buffers
to fill first. Reported:
the healthy clients' p99 in both runs, the server's RSS (sampled every 0.2 s)
and how many stalled clients the server disconnected, seen when they read
again (close code 4008, or the connection simply gone).

streamchat runs here with ``STREAMCHAT_WS_MAX_QUEUED_BYTES`` lowered to
``slow_max_queued_bytes`` so the stalled clients overflow within the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.accounts import Accounts
from harness.config import BenchConfig
from harness.servers import RunningServer
from harness.traffic import Traffic, run_traffic

__all__ = ["measure_slow"]


async def measure_slow(
    server: RunningServer, cfg: BenchConfig, accounts: Accounts | None, logs: Path
) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for label, stalled in (("baseline", 0), ("stalled", cfg.slow_stalled)):
        traffic = Traffic(
            rooms=[cfg.room],
            subscribers_per_room=cfg.slow_clients,
            publishers_per_room=1,
            rate=cfg.slow_rate,
            seconds=cfg.slow_seconds if stalled else cfg.slow_baseline_seconds,
            warmup=1.0,
            drain=3.0,
            text_bytes=cfg.slow_text_bytes,
            stalled=stalled,
            stalled_wait=cfg.slow_wait,
            sample_rss=True,
        )
        result = await run_traffic(server, traffic, cfg, accounts, logs)
        slow = result.get("slow") or {}
        runs[label] = {
            "stalled": stalled,
            "healthy": result["healthy_subscribers"],
            "p50_ms": result["latency"]["p50_ms"],
            "p99_ms": result["latency"]["p99_ms"],
            "lost": result["lost"],
            "disconnected_healthy": result["disconnected"],
            "rss_before": result["rss_before"],
            "rss_max": result.get("rss_max"),
            "rss_after": result.get("rss_after"),
            "stalled_disconnected": slow.get("disconnected", 0),
            "stalled_close_codes": slow.get("close_codes", {}),
            "server_cpu_percent": result.get("server_cpu_percent"),
            "loadgen_cpu_percent": result["loadgen_cpu_percent"],
            "other_cpu_percent": result.get("other_cpu_percent"),
        }
        print(
            f"  {server.spec.name} {label}: healthy p99 {result['latency']['p99_ms']} ms, "
            f"lost {result['lost']}, RSS max {(result.get('rss_max') or 0) / 2**20:.1f} MiB, "
            f"stalled disconnected {slow.get('disconnected', 0)}/{stalled} "
            f"{slow.get('close_codes', {})}",
            file=sys.stderr,
        )
    return {
        "clients": cfg.slow_clients,
        "rate": cfg.slow_rate,
        "seconds": cfg.slow_seconds,
        "baseline_seconds": cfg.slow_baseline_seconds,
        "text_bytes": cfg.slow_text_bytes,
        "max_queued_bytes": server.env.get("STREAMCHAT_WS_MAX_QUEUED_BYTES"),
        **runs,
    }
