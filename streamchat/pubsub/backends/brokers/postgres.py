"""A broker on PostgreSQL LISTEN/NOTIFY: ``postgresql://user@host:5432/db``.

A channel maps to the NOTIFY channel ``pubsub_<hash>`` (identifiers are limited to 63
bytes). Envelopes travel base64-encoded, and NOTIFY payloads must stay under 8000 bytes,
so ``max_payload`` is 5900: a larger stored message is sent as a reference (channel, seq,
epoch) and receivers fetch it from the store. An ephemeral message over the limit is
refused. Receiving uses one dedicated connection, watched by a termination listener and,
when quiet, a ``SELECT 1`` every ``ping_interval`` seconds (URL option, default 5).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from typing import Any

import asyncpg

from ..._errors import BrokerError
from .._options import option, pop_options, positive_float
from ..base import Broker
from ._inbox import Inbox

__all__ = ["PostgresBroker"]

# What asyncpg raises for a failed operation; anything else is a bug, raised.
_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)

log = logging.getLogger("streamchat.pubsub")


class PostgresBroker(Broker):
    # 7999 bytes of base64 text hold 5999 bytes; keep a margin.
    max_payload = 5900

    def __init__(self, url: str, *, ping_interval: float | None = None) -> None:
        url, options = pop_options(url, {"ping_interval", "application_name"})
        scheme, _, rest = url.partition("://")
        self._dsn = f"{scheme.split('+', 1)[0]}://{rest}"
        self.ping_interval = positive_float(
            "ping_interval", option(ping_interval, options, "ping_interval"), 5.0
        )
        self.application_name = options.get("application_name", "streamchat.pubsub")
        self.channels: set[str] = set()
        self._listener: Any = None  # asyncpg.Connection
        self._pool: Any = None  # asyncpg.Pool
        self._inbox = Inbox()
        # asyncpg runs one operation at a time per connection: LISTEN, UNLISTEN and pings.
        self._lock = asyncio.Lock()

    @staticmethod
    def notify_channel(channel: str) -> str:
        return "pubsub_" + hashlib.blake2b(channel.encode(), digest_size=16).hexdigest()

    async def connect(self) -> None:
        self._inbox.reset()
        try:
            listener = await asyncpg.connect(
                self._dsn,
                timeout=5,
                server_settings={"application_name": f"{self.application_name}/listen"},
            )
            self._listener = listener
            listener.add_termination_listener(self._on_terminated)
            for channel in self.channels:
                await listener.add_listener(self.notify_channel(channel), self._on_notify)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=4,
                timeout=5,
                server_settings={"application_name": self.application_name},
            )
        except _ERRORS as exc:
            await self.disconnect()
            raise BrokerError(f"cannot connect to PostgreSQL: {exc!r}") from exc

    def _on_terminated(self, connection: Any) -> None:
        if connection is self._listener:
            self._inbox.fail(BrokerError("PostgreSQL LISTEN connection terminated"))

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            log.warning("pubsub: dropped a NOTIFY on %s that is not base64", channel)
            return
        self._inbox.put(data)

    async def disconnect(self) -> None:
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        if listener is not None:
            try:
                await asyncio.wait_for(listener.close(), timeout=2)
            except _ERRORS:
                listener.terminate()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=2)
            except _ERRORS:
                pool.terminate()

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        listener = self._listener
        if listener is None or listener.is_closed():
            raise BrokerError("PostgreSQL broker is not connected")
        try:
            async with self._lock:
                await listener.add_listener(self.notify_channel(channel), self._on_notify)
        except _ERRORS as exc:
            raise BrokerError(f"LISTEN for {channel!r} failed: {exc!r}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        listener = self._listener
        if listener is None or listener.is_closed():
            return
        try:
            async with self._lock:
                await listener.remove_listener(self.notify_channel(channel), self._on_notify)
        except _ERRORS as exc:
            raise BrokerError(f"UNLISTEN for {channel!r} failed: {exc!r}") from exc

    async def publish(self, channel: str, data: bytes) -> None:
        pool = self._pool
        if pool is None:
            raise BrokerError("PostgreSQL broker is not connected")
        try:
            await pool.execute(
                "SELECT pg_notify($1, $2)",
                self.notify_channel(channel),
                base64.b64encode(data).decode("ascii"),
            )
        except _ERRORS as exc:
            raise BrokerError(f"NOTIFY failed: {exc!r}") from exc

    async def next_published(self) -> bytes:
        while True:
            data = await self._inbox.get(idle=self.ping_interval)
            if data is not None:
                return data
            # Quiet for a while: make sure the LISTEN connection still answers.
            listener = self._listener
            if listener is None:
                raise BrokerError("PostgreSQL broker is not connected")
            try:
                async with self._lock, asyncio.timeout(self.ping_interval):
                    await listener.execute("SELECT 1")
            except _ERRORS as exc:
                raise BrokerError(f"PostgreSQL LISTEN connection lost: {exc!r}") from exc
