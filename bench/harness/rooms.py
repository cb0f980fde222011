"""3. Many rooms: ``rooms_count`` rooms x ``rooms_subscribers`` subscribers, persisted.

One publisher per room, each a different user, share ``rooms_rate`` messages
per second between them. Every message goes through streamchat's full path
(session, room, text checks, the store's transaction, the broker, the room's
fan-out), on SQLite and on PostgreSQL. After the run the store's sequence
numbers are summed over the rooms, to show that every acknowledged message was
persisted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.accounts import Accounts, bench_rooms, persisted_messages
from harness.config import BenchConfig
from harness.servers import RunningServer
from harness.traffic import Traffic, run_traffic

__all__ = ["measure_rooms"]


async def measure_rooms(
    server: RunningServer,
    cfg: BenchConfig,
    accounts: Accounts,
    logs: Path,
    *,
    database: str,
    database_url: str,
) -> dict[str, Any]:
    rooms = bench_rooms(cfg.rooms_count)
    traffic = Traffic(
        rooms=rooms,
        subscribers_per_room=cfg.rooms_subscribers,
        publishers_per_room=1,
        rate=cfg.rooms_rate,
        seconds=cfg.rooms_seconds,
        warmup=1.0,
        drain=3.0,
        text_bytes=cfg.text_bytes,
    )
    result = await run_traffic(server, traffic, cfg, accounts, logs)
    persisted = await persisted_messages(database_url, rooms)
    summary = {
        "database": database,
        "rooms": len(rooms),
        "subscribers": result["subscribers"],
        "publishers": result["publishers"],
        "rate": cfg.rooms_rate,
        "sent": result["sent"],
        "acked": result["acked"],
        "persisted": persisted,
        "expected_deliveries": result["expected_deliveries"],
        "delivered": result["delivered"],
        "lost": result["lost"],
        "errors": result["errors"],
        "deliver": result["latency"],
        "ack": result["ack_latency"],
        "server_cpu_percent": result.get("server_cpu_percent"),
        "loadgen_cpu_percent": result["loadgen_cpu_percent"],
        "other_cpu_percent": result.get("other_cpu_percent"),
    }
    print(
        f"  streamchat on {database}: deliver p50/p99 {result['latency']['p50_ms']}/"
        f"{result['latency']['p99_ms']} ms, ack p50/p99 {result['ack_latency']['p50_ms']}/"
        f"{result['ack_latency']['p99_ms']} ms, lost {result['lost']}, "
        f"persisted {persisted}/{result['sent']}",
        file=sys.stderr,
    )
    return summary
