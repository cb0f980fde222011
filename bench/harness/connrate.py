"""4. Connection rate: WebSocket handshakes (logged in, for streamchat) plus a subscribe.

``connrate_connections`` clients, at most ``connrate_concurrency`` in flight,
each connect with the session cookie, subscribe to one of the bench rooms
(spread so a room's join announcements stay small), wait for the reply and
hang up. The figure is completed handshakes per second of wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.accounts import Accounts, bench_rooms
from harness.config import BenchConfig
from harness.loadgen import run_loadgen
from harness.servers import RunningServer

__all__ = ["measure_connrate"]


async def measure_connrate(
    server: RunningServer, cfg: BenchConfig, accounts: Accounts | None, logs: Path
) -> dict[str, Any]:
    spec = {
        "scenario": "connect",
        "url": server.url,
        "protocol": server.spec.protocol,
        "transport": cfg.transport,
        "tokens_file": str(accounts.path) if accounts and server.spec.authenticated else None,
        "rooms": bench_rooms(cfg.rooms_count),
        "connections": cfg.connrate_connections,
        "concurrency": cfg.connrate_concurrency,
        "source_ips": cfg.source_ips,
    }
    meter = server.cpu()
    result = await run_loadgen(spec, logs, deadline=300)
    result["server_cpu_percent"] = round(meter.percent(), 1)
    print(
        f"  {server.spec.name}: {result['per_s']} handshakes/s "
        f"({result['succeeded']}/{result['connections']} in {result['seconds']} s, "
        f"p99 {result['latency']['p99_ms']} ms)",
        file=sys.stderr,
    )
    return result
