"""1. Fan-out capacity: the highest publish rate one room of subscribers takes cleanly.

One server process, one room, ``capacity_clients`` subscribers, one publisher
of ~100-byte messages at a fixed rate. A step passes when every delivery
arrives and the publish -> deliver p99 is within ``capacity_p99_ms``. The rate
doubles from ``capacity_start_rate`` until a step fails (or halves until one
passes), then bisects (geometrically) until the failing rate is within
``capacity_precision`` of the passing one. Capacity is the best passing rate
times the subscribers, in deliveries per second.

A failed step is run once more when other processes used a lot of CPU during
it, so a neighbour's burst does not pass for the server's limit.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from harness.accounts import Accounts
from harness.config import BenchConfig
from harness.servers import RunningServer
from harness.traffic import Traffic, run_traffic

__all__ = ["measure_capacity"]


def _passed(step: dict[str, Any], cfg: BenchConfig) -> bool:
    p99 = step["latency"]["p99_ms"]
    return (
        step["lost"] == 0
        and step["disconnected"] == 0
        and not step["errors"]
        and step["unacked"] == 0
        and p99 is not None
        and p99 <= cfg.capacity_p99_ms
    )


def _summary(step: dict[str, Any], passed: bool) -> dict[str, Any]:
    return {
        "rate": step["rate"],
        "passed": passed,
        "deliveries_per_s": step["delivered_per_s"],
        "lost": step["lost"],
        "disconnected": step["disconnected"],
        "errors": step["errors"],
        "p50_ms": step["latency"]["p50_ms"],
        "p99_ms": step["latency"]["p99_ms"],
        "ack_p99_ms": step["ack_latency"]["p99_ms"],
        "server_cpu_percent": step.get("server_cpu_percent"),
        "loadgen_cpu_percent": step["loadgen_cpu_percent"],
        "loadgen_loop_delay_p99_ms": step["loadgen_loop_delay_p99_ms"],
        "other_cpu_percent": step.get("other_cpu_percent"),
        "connect_seconds": step.get("connect_seconds"),
        "settle_seconds": step.get("settle_seconds"),
    }


async def measure_capacity(
    server: RunningServer, cfg: BenchConfig, accounts: Accounts | None, logs: Path
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []

    async def step(rate: float) -> bool:
        rate = round(rate)
        for attempt in range(2):
            traffic = Traffic(
                rooms=[cfg.room],
                subscribers_per_room=cfg.capacity_clients,
                publishers_per_room=1,
                rate=rate,
                seconds=cfg.capacity_seconds,
                warmup=cfg.capacity_warmup,
                drain=cfg.capacity_drain,
                text_bytes=cfg.text_bytes,
            )
            result = await run_traffic(server, traffic, cfg, accounts, logs)
            passed = _passed(result, cfg)
            summary = _summary(result, passed)
            noisy = (result.get("other_cpu_percent") or 0) > cfg.capacity_noise_cpu_percent
            summary["retried"] = attempt > 0
            steps.append(summary)
            print(
                f"  {server.spec.name} @ {rate:>5} msg/s: {'pass' if passed else 'FAIL'} "
                f"p99 {summary['p99_ms']} ms, lost {summary['lost']}, "
                f"server {summary['server_cpu_percent']}% loadgen "
                f"{summary['loadgen_cpu_percent']}% other {summary['other_cpu_percent']}%",
                file=sys.stderr,
            )
            if passed or not noisy:
                return passed
        return False

    best: float | None = None
    worst: float | None = None
    rate = cfg.capacity_start_rate
    if await step(rate):
        best = rate
        while rate * 2 <= cfg.capacity_max_rate:
            rate *= 2
            if not await step(rate):
                worst = rate
                break
            best = rate
    else:
        worst = rate
        while rate / 2 >= cfg.capacity_min_rate:
            rate /= 2
            if await step(rate):
                best = rate
                break
            worst = rate
    if best is not None and worst is not None:
        while worst / best > cfg.capacity_precision:
            middle = math.sqrt(best * worst)
            if round(middle) in (round(best), round(worst)):
                break
            if await step(middle):
                best = middle
            else:
                worst = middle

    clients = cfg.capacity_clients
    best_step = max((s for s in steps if s["passed"]), key=lambda s: s["rate"], default=None)
    return {
        "clients": clients,
        "capacity_rate": best_step["rate"] if best_step else 0,
        "capacity_deliveries_per_s": best_step["rate"] * clients if best_step else 0,
        "first_failing_rate": round(worst) if worst is not None else None,
        "at_capacity": best_step,
        "peak_deliveries_per_s": max(s["deliveries_per_s"] for s in steps),
        "steps": steps,
    }
