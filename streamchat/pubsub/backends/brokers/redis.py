"""A broker on Redis pub/sub: ``redis://host:6379/0`` or ``rediss://`` (TLS).

Channels map to Redis channels of the same name. Publishing uses a pooled client; receiving
uses one dedicated pub/sub connection that never reconnects on its own: redis-py would
resubscribe silently and lose what was published meanwhile, so a broken connection is
reported and the PubSub reconnects and recovers from the store. A connection that stays
quiet is PINGed every ``ping_interval`` seconds (URL option, default 5) and declared lost
when nothing comes back within three intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub as RedisPubSub
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..._errors import BrokerError, ConfigurationError
from .._options import option, pop_options, positive_float
from ..base import Broker

__all__ = ["RedisBroker"]

_ERRORS = (RedisError, OSError, TimeoutError)
#: Publishes sent in one pipeline, at most.
_MAX_PIPELINE = 512
_CONFIRM_TIMEOUT = 10.0


class RedisBroker(Broker):
    def __init__(self, url: str, *, ping_interval: float | None = None) -> None:
        url, options = pop_options(url, {"ping_interval"})
        try:
            parse_url(url)
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL: {exc}") from exc
        self._url = url
        self.ping_interval = positive_float(
            "ping_interval", option(ping_interval, options, "ping_interval"), 5.0
        )
        self.channels: set[str] = set()
        self._publisher: Redis | None = None
        self._receiver: Redis | None = None
        self._pubsub: RedisPubSub | None = None
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._last_heard = 0.0
        self._early: deque[bytes] = deque()
        # Publishes waiting for the writer, which sends them in order, pipelined on one
        # connection: a burst costs one round trip, not a connection each.
        self._outgoing: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._early.clear()
        try:
            self._publisher = Redis.from_url(self._url, socket_connect_timeout=5)
            # No retries: a failed read must surface, not be papered over by a reconnect.
            self._receiver = Redis.from_url(
                self._url, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0)
            )
            self._pubsub = self._receiver.pubsub()
            await self._pubsub.connect()  # type: ignore[no-untyped-call]
            if self.channels:
                await self._pubsub.subscribe(*self.channels)
                await self._await_confirmations(set(self.channels))
            else:
                await self._pubsub.ping()
        except _ERRORS as exc:
            await self.disconnect()
            raise BrokerError(f"cannot connect to Redis: {exc}") from exc
        self._last_heard = time.monotonic()

    async def _await_confirmations(self, pending: set[str]) -> None:
        # Only during connect: the listener is not running yet, so we read the replies here,
        # keeping the messages that arrive in between for next_published.
        assert self._pubsub is not None
        async with asyncio.timeout(_CONFIRM_TIMEOUT):
            while pending:
                reply = await self._pubsub.get_message(timeout=_CONFIRM_TIMEOUT)
                if reply is None:
                    continue
                if reply["type"] == "subscribe":
                    pending.discard(_text(reply["channel"]))
                elif reply["type"] == "message":
                    self._early.append(_data(reply["data"]))

    async def disconnect(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        self._fail_outgoing(BrokerError("Redis broker disconnected"))
        pubsub, self._pubsub = self._pubsub, None
        clients = [self._receiver, self._publisher]
        self._receiver = self._publisher = None
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(BrokerError("Redis broker disconnected"))
        self._confirmations.clear()
        if pubsub is not None:
            with contextlib.suppress(*_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        for client in clients:
            if client is not None:
                with contextlib.suppress(*_ERRORS):
                    await client.aclose()

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            raise BrokerError("Redis broker is not connected")
        # The listener (next_published) reads the confirmation; we wait for it so that
        # whatever is published after we return is delivered.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(waiter)
        try:
            await pubsub.subscribe(channel)
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                await waiter
        except _ERRORS as exc:
            raise BrokerError(f"Redis SUBSCRIBE {channel!r} failed: {exc!r}") from exc
        finally:
            waiters = self._confirmations.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._confirmations[channel]

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._pubsub is None:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except _ERRORS as exc:
            raise BrokerError(f"Redis UNSUBSCRIBE {channel!r} failed: {exc!r}") from exc

    async def publish(self, channel: str, data: bytes) -> None:
        if self._publisher is None:
            raise BrokerError("Redis broker is not connected")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing.append((channel, data, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="redis-publish")
        await future

    async def _write(self) -> None:
        try:
            while self._outgoing:
                batch = self._outgoing[:_MAX_PIPELINE]
                del self._outgoing[:_MAX_PIPELINE]
                error: BrokerError | None = None
                publisher = self._publisher
                if publisher is None:
                    error = BrokerError("Redis broker is not connected")
                else:
                    try:
                        async with publisher.pipeline(transaction=False) as pipe:
                            for channel, data, _ in batch:
                                pipe.publish(channel, data)
                            await pipe.execute()
                    except _ERRORS as exc:
                        error = BrokerError(f"Redis PUBLISH failed: {exc!r}")
                for _, _, future in batch:
                    if future.done():
                        continue  # its publisher stopped waiting
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._writer = None
            self._fail_outgoing(BrokerError("Redis broker disconnected"))

    def _fail_outgoing(self, error: BrokerError) -> None:
        outgoing, self._outgoing = self._outgoing, []
        for _, _, future in outgoing:
            if not future.done():
                future.set_exception(error)

    async def next_published(self) -> bytes:
        if self._early:
            return self._early.popleft()
        interval = self.ping_interval
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                raise BrokerError("Redis broker is not connected")
            try:
                reply: dict[str, Any] | None = await pubsub.get_message(timeout=interval)
                now = time.monotonic()
                if reply is None:
                    silent = now - self._last_heard
                    if silent > 3 * interval:
                        raise BrokerError(f"Redis pub/sub connection silent for {silent:.1f}s")
                    if silent >= interval:
                        await pubsub.ping()
                    continue
            except _ERRORS as exc:
                raise BrokerError(f"Redis pub/sub connection lost: {exc!r}") from exc
            self._last_heard = now
            kind = reply["type"]
            if kind == "message":
                return _data(reply["data"])
            if kind == "subscribe":
                for waiter in self._confirmations.get(_text(reply["channel"]), ()):
                    if not waiter.done():
                        waiter.set_result(None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _data(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
