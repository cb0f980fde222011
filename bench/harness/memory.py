"""2. Memory per idle connection: server RSS growth over many subscribed connections.

A fresh server takes one warm-up client (so code paths and the room exist),
goes idle, and its RSS is read; then ``memory_connections`` clients connect
(logged in, for streamchat) and subscribe to one room. Once the server is idle
again (joins fan out) and has had a moment to collect garbage, RSS is read
again. The difference per connection is the figure.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from harness.accounts import Accounts
from harness.config import BenchConfig
from harness.loadgen import run_loadgen
from harness.servers import RunningServer

__all__ = ["measure_memory"]


async def measure_memory(
    server: RunningServer, cfg: BenchConfig, accounts: Accounts | None, logs: Path
) -> dict[str, Any]:
    def spec(connections: int) -> dict[str, Any]:
        return {
            "scenario": "idle",
            "url": server.url,
            "protocol": server.spec.protocol,
            "transport": cfg.transport,
            "tokens_file": str(accounts.path) if accounts and server.spec.authenticated else None,
            "rooms": [cfg.room],
            "subscribers_per_room": connections,
            "connections": connections,
            "concurrency": 200,
            "source_ips": cfg.source_ips,
            "settle_max_s": 120,
        }

    async def close_when_ready(_pid: int, event: str, _fields: dict[str, Any]) -> str | None:
        return "close" if event == "ready" else None

    await run_loadgen(spec(1), logs, on_event=close_when_ready, deadline=60)
    await server.wait_idle()
    await asyncio.sleep(1.0)
    before = server.rss()
    figures: dict[str, Any] = {}

    async def measure_when_ready(_pid: int, event: str, fields: dict[str, Any]) -> str | None:
        if event != "ready":
            return None
        figures["settle_seconds"] = round(await server.wait_idle(limit=120), 2)
        await asyncio.sleep(2.0)
        figures["rss_after"] = server.rss()
        figures["connect_seconds"] = fields["seconds"]
        return "close"

    result = await run_loadgen(
        spec(cfg.memory_connections), logs, on_event=measure_when_ready, deadline=600
    )
    connected = result["connected"]
    growth = figures["rss_after"] - before
    per_connection = growth / connected if connected else None
    print(
        f"  {server.spec.name}: {connected} connections, RSS {before / 2**20:.1f} -> "
        f"{figures['rss_after'] / 2**20:.1f} MiB, "
        f"{(per_connection or 0) / 1024:.1f} KiB per connection",
        file=sys.stderr,
    )
    return {
        "connections": cfg.memory_connections,
        "connected": connected,
        "failed": result["failed"],
        "dropped_while_idle": result["dropped_while_idle"],
        "rss_before": before,
        "rss_after": figures["rss_after"],
        "bytes_per_connection": round(per_connection) if per_connection is not None else None,
        "connect_seconds": figures["connect_seconds"],
        "settle_seconds": figures["settle_seconds"],
    }
