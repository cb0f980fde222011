"""PubSub: publish stored (or ephemeral) messages and subscribe to channels, across processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any

from ._channel import ChannelState
from ._errors import BrokerError, PubSubError
from ._health import Health, LinkState
from ._message import Message
from ._positions import PositionReader
from ._registry import make_broker, make_store
from ._replay import REPLAY_PAGE, Read, pages
from ._subscription import Subscription
from ._wire import Envelope, WireError, decode, encode, reference_size
from .backends.base import Broker, Store

__all__ = ["PubSub"]

log = logging.getLogger("streamchat.pubsub")

_MAX_CHANNEL_LENGTH = 512


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"channel must be a non-empty str, got {channel!r}")
    if len(channel) > _MAX_CHANNEL_LENGTH:
        raise ValueError(f"channel name longer than {_MAX_CHANNEL_LENGTH} characters")


class PubSub:
    """Channels of messages: stored with gapless per-channel seqs, fanned out to subscribers.

    ``broker`` carries messages between processes and ``store`` keeps the history; each is a
    URL (see ``BROKERS`` and ``STORES`` in ``_registry``) or an instance::

        async with PubSub(broker="redis://127.0.0.1:6379", store="sqlite+aiosqlite:///c.db") as ps:
            async with ps.subscribe("room:1") as sub:
                await ps.publish("room:1", b"hi")
                message = await anext(sub)

    ``namespace`` is prefixed to every channel name on the broker (not in the store): give
    each deployment that shares a broker server its own.

    One listener task receives everything from the broker and fans it out to the local
    subscribers; a sweep task (every ``sweep_interval`` seconds, None to disable) compares
    the delivered positions with the store, so a broadcast lost anywhere is still delivered.

    A stored message reaches this process's own subscribers as soon as it is stored, not
    through the broker, and ``publish`` waits at most ``broadcast_timeout`` seconds for the
    broker: a broker that fails or stops answering delays neither local delivery nor the
    publisher. While its broadcasts fail, ``health.publishing`` is False, the broker is
    left alone, and one broadcast at a time probes it until it takes one again.
    """

    def __init__(
        self,
        broker: str | Broker = "memory://",
        store: str | Store = "memory://",
        *,
        queue_size: int = 1024,
        reconnect_backoff: tuple[float, float] = (0.05, 5.0),
        sweep_interval: float | None = 5.0,
        namespace: str = "",
        broadcast_timeout: float = 1.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not broadcast_timeout > 0:
            raise ValueError("broadcast_timeout must be positive")
        # Prefixed to every channel on the broker: deployments sharing one broker server
        # (Redis pub/sub ignores the database number) never hear each other.
        self._namespace = namespace
        self._broker = broker if isinstance(broker, Broker) else make_broker(broker)
        self._store = store if isinstance(store, Store) else make_store(store)
        self._queue_size = queue_size
        self._backoff = reconnect_backoff
        self._sweep_interval = sweep_interval
        self._channels: dict[str, ChannelState] = {}
        self._positions = PositionReader(self._store)
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._health = Health(LinkState.DISCONNECTED, time.time())
        self._broadcast_timeout = broadcast_timeout
        # While broadcasts fail: the one in flight that probes the broker.
        self._probe: asyncio.Task[None] | None = None

    # -- life cycle --

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def store(self) -> Store:
        return self._store

    @property
    def health(self) -> Health:
        """The broker link's state, since when, and the last error."""
        return self._health

    async def connect(self) -> None:
        """Connect the store and the broker and start the listener."""
        if self._connected:
            raise RuntimeError("PubSub is already connected")
        await self._store.connect()
        try:
            await self._broker.connect()
        except BaseException:
            await self._store.disconnect()
            raise
        self._connected = True
        self._health = Health(LinkState.CONNECTED, time.time())
        self._start(self._listen(), "listener")
        if self._sweep_interval is not None:
            self._start(self._sweep(self._sweep_interval), "sweeper")

    async def disconnect(self) -> None:
        """Stop the tasks, end every subscription, and close the broker and the store."""
        if not self._connected:
            return
        self._connected = False
        tasks, self._tasks = self._tasks, []
        if self._probe is not None:
            tasks.append(self._probe)
            self._probe = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A lookup started for a subscriber that has gone must not outlive the store.
        await self._positions.close()
        for state in self._channels.values():
            for sub in state.subscribers:
                sub._close()
        self._channels.clear()
        try:
            await self._broker.disconnect()
        finally:
            await self._store.disconnect()
            self._health = Health(
                LinkState.DISCONNECTED,
                time.time(),
                self._health.last_error,
                self._health.reconnects,
            )

    async def __aenter__(self) -> PubSub:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def _require_connected(self) -> None:
        if not self._connected:
            raise RuntimeError(
                "PubSub is not connected; use 'async with ps:' or 'await ps.connect()'"
            )

    def _start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"streamchat.pubsub.{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # The loops catch everything per iteration; getting here means a bug, so say it loudly
        # and show it in health rather than leave a deaf process.
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("pubsub: background task %s died", task.get_name(), exc_info=exc)
        self._health = Health(
            LinkState.DISCONNECTED, time.time(), f"{task.get_name()} died: {exc!r}"
        )

    # -- publishing --

    async def publish(
        self,
        channel: str,
        payload: bytes,
        *,
        store: bool = True,
        dedupe_key: str | None = None,
    ) -> Message:
        """Store ``payload`` under the channel's next seq, then broadcast it; return the Message.

        Returns once the message is durable. If the broadcast then fails, subscribers still
        get it from the store (on the next gap, sweep or reconnect). With ``dedupe_key``, a
        key already stored on this channel returns the original Message and broadcasts
        nothing. With ``store=False`` the message is ephemeral: ``seq == 0``, delivered at
        most once to live subscribers, never replayed; a broker failure raises BrokerError.
        """
        self._require_connected()
        _check_channel(channel)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        limit = self._broker.max_payload
        if not store:
            if dedupe_key is not None:
                raise ValueError("dedupe_key needs a stored message (store=True)")
            message = Message(channel, 0, payload, time.time(), "")
            data = encode(message)
            if limit is not None and len(data) > limit:
                raise PubSubError(
                    f"ephemeral message of {len(data)} bytes exceeds the broker's limit of "
                    f"{limit} bytes; publish it stored"
                )
            if not self._health.publishing and self._probe is not None:
                raise BrokerError(f"the broker does not take messages: {self._health.last_error}")
            await self._send(channel, data)
            return message
        if not payload:
            # An empty stored payload is what a redacted message reads as.
            raise ValueError("a stored message needs a payload (empty means redacted)")
        message, created = await self._store.append(channel, payload, dedupe_key=dedupe_key)
        if not created:
            return message
        state = self._channels.get(channel)
        if state is not None and state.ready:
            state.deliver_local(message, self._queue_size)
        data = encode(message)
        if limit is not None and len(data) > limit:
            if reference_size(message) > limit:
                raise PubSubError(f"channel name too long for the broker: {channel!r}")
            # Receivers fetch the payload from the store.
            data = encode(message, reference=True)
        if self._health.publishing:
            await self._broadcast(channel, message.seq, data)
        elif self._probe is None:
            self._probe = asyncio.create_task(
                self._broadcast(channel, message.seq, data), name="streamchat.pubsub.probe"
            )
            self._probe.add_done_callback(self._probe_done)
        return message

    async def _broadcast(self, channel: str, seq: int, data: bytes) -> None:
        """Send a stored message to the other processes; a failure is logged, not raised:
        subscribers recover the message from the store."""
        publishing = self._health.publishing
        try:
            await self._send(channel, data)
        except BrokerError as exc:
            if publishing:
                log.warning(
                    "channel %r: seq %d is stored but its broadcast failed (%s); subscribers "
                    "recover it from the store, and broadcasts wait until the broker is back",
                    channel,
                    seq,
                    exc,
                )
            else:
                # A failed probe: the next one no sooner than after a pause.
                await asyncio.sleep(self._broadcast_timeout)

    async def _send(self, channel: str, data: bytes) -> None:
        """Hand ``data`` to the broker within the timeout; keep ``health.publishing``."""
        try:
            async with asyncio.timeout(self._broadcast_timeout):
                await self._broker.publish(self._namespace + channel, data)
        except (BrokerError, TimeoutError) as exc:
            error = str(exc) or f"no answer within {self._broadcast_timeout}s"
            if self._health.publishing:
                self._health = dataclasses.replace(
                    self._health, publishing=False, last_error=f"broadcast failed: {error}"
                )
            raise BrokerError(f"broadcast failed: {error}") from exc
        if not self._health.publishing and self._health.connected:
            log.warning("pubsub: the broker takes broadcasts again")
            self._health = dataclasses.replace(self._health, publishing=True)

    def _probe_done(self, task: asyncio.Task[None]) -> None:
        if self._probe is task:
            self._probe = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("pubsub: probing the broker failed", exc_info=exc)

    # -- reading the store --

    async def history(
        self, channel: str, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        """The ``limit`` newest stored messages with ``seq < before``, oldest first."""
        _check_channel(channel)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return await self._store.history(channel, before=before, limit=limit)

    async def read(self, channel: str, after: int = 0, limit: int = 100) -> list[Message]:
        """At most ``limit`` stored messages with ``seq > after``, oldest first."""
        _check_channel(channel)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return await self._store.read(channel, after=after, limit=limit)

    def replay(self, channel: str, *, after: int, until: int) -> AsyncGenerator[list[Message]]:
        """The stored messages with ``after < seq <= until``, oldest first, a page at a
        time: what a client that was away missed. Ends early where history was pruned."""
        _check_channel(channel)
        return pages(self._reader(channel), after=after, until=until)

    def _reader(self, channel: str) -> Read:
        store = self._store

        async def read(after: int, limit: int) -> list[Message]:
            return await store.read(channel, after=after, limit=limit)

        return read

    async def find(self, channel: str, dedupe_key: str) -> Message | None:
        """The stored message published with ``dedupe_key`` on ``channel``, while retained."""
        _check_channel(channel)
        return await self._store.find(channel, dedupe_key)

    async def last(self, channel: str) -> tuple[str, int]:
        """The channel's ``(epoch, last seq)``: a position to subscribe ``since`` later."""
        _check_channel(channel)
        return await self._store.last(channel)

    async def redact(
        self, channel: str, seqs: Iterable[int] = (), *, through: int | None = None
    ) -> list[int]:
        """Remove the payload of stored messages of ``channel`` (those in ``seqs``, and with
        ``through`` every one up to it), keeping their seqs: history, reads and replays
        return them in place as ``Message.redacted`` (empty payload), so recovery stays
        gapless. Live subscribers are not told: publish a notice of your own. Returns the
        seqs redacted now. See :meth:`Store.redact`.
        """
        _check_channel(channel)
        return await self._store.redact(channel, seqs, through=through)

    async def prune(
        self, *, older_than: float | None = None, keep_last: int | None = None, limit: int = 1000
    ) -> int:
        """Delete at most ``limit`` stored messages, of every channel; return how many.

        Deleted are the messages created before ``older_than`` (UNIX seconds) and those
        beyond the newest ``keep_last`` of their channel, oldest first. Call again until it
        returns less than ``limit``: each call is short, and publishing goes on in between.
        Epochs and last seqs never change, so positions stay valid; a ``since`` from before
        the oldest retained message gives ``recovered=False``, and a pruned message's
        dedupe key is forgotten. See :meth:`Store.prune`.
        """
        return await self._store.prune(older_than=older_than, keep_last=keep_last, limit=limit)

    # -- subscribing --

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        channel: str,
        since: tuple[str, int] | None = None,
        *,
        queue_size: int | None = None,
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``channel``: ``async with ps.subscribe(ch) as sub: async for m in sub``.

        With ``since=(epoch, seq)`` the subscription first replays the stored messages after
        ``seq``, then goes on live, with no gap and no duplicate; ``sub.recovered`` tells
        whether that was possible (same epoch, history still reaching back). When it was not,
        or without ``since``, the subscription starts with the next message.
        """
        self._require_connected()
        _check_channel(channel)
        if since is not None:
            epoch, seq = since
            if not isinstance(epoch, str) or not isinstance(seq, int) or seq < 0:
                raise ValueError(f"since must be (epoch: str, seq: int >= 0), got {since!r}")
        size = self._queue_size if queue_size is None else queue_size
        if size < 1:
            raise ValueError("queue_size must be at least 1")
        state, sub = await self._open(channel, since, size)
        try:
            yield sub
        finally:
            await self._release(state, sub)

    async def listen(
        self,
        channel: str,
        handle: Callable[[Message], object],
        *,
        ready: asyncio.Event | None = None,
    ) -> None:
        """Call ``handle`` with every message of ``channel``, until cancelled or disconnected.

        For a process's long-lived listeners: a failure (of the broker, of ``handle``, a
        subscription that fell behind) is logged, and the subscription is opened again
        after a capped backoff. ``ready`` is set once the subscription is live.
        """
        failures = 0
        while self._connected:
            try:
                async with self.subscribe(channel) as sub:
                    failures = 0
                    if ready is not None:
                        ready.set()
                    async for message in sub:
                        handle(message)
                return  # the PubSub was disconnected
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception(
                    "pubsub: listening on %r failed (%d); resubscribing", channel, failures
                )
                await asyncio.sleep(self._retry_delay(failures))

    async def _open(
        self, channel: str, since: tuple[str, int] | None, size: int
    ) -> tuple[ChannelState, Subscription]:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = ChannelState(channel)
        state.users += 1
        try:
            if not state.ready:
                async with state.lock:
                    if not state.ready:
                        await self._activate(state)
            recovered, replay = False, list[Message]()
            if since is not None:
                recovered, replay = await self._check_since(channel, since)
        except BaseException:
            await self._leave(state)
            raise
        # No await from here on: the subscriber joins at a position the dispatcher agrees on.
        # Everything after state.last_seq reaches it live; the replay covers up to it.
        live = state.last_seq
        if since is not None and recovered and since[0] == state.epoch:
            start = since[1]
            replay = [m for m in replay if m.seq <= live]
        else:
            recovered, start, replay = False, live, []

        sub = Subscription(
            channel,
            maxsize=size,
            epoch=state.epoch,
            last_seq=start,
            recovered=recovered,
            replay=replay,
            catch_up_until=live,
            fetch=self._reader(channel),
        )
        state.subscribers.add(sub)
        return state, sub

    async def _check_since(
        self, channel: str, since: tuple[str, int]
    ) -> tuple[bool, list[Message]]:
        epoch, seq = since
        store_epoch, last = await self._store.last(channel)
        if store_epoch != epoch or seq > last:
            return False, []
        if seq == last:
            return True, []
        page = await self._store.read(channel, after=seq, limit=REPLAY_PAGE)
        if page and page[0].seq == seq + 1 and page[0].epoch == epoch:
            return True, page
        return False, []

    async def _activate(self, state: ChannelState) -> None:
        """Subscribe the channel on the broker first, then take the store's position."""
        try:
            await self._broker.subscribe(self._namespace + state.name)
        except BrokerError as exc:
            # The broker keeps the channel and subscribes it when the link is back; the
            # reconnect recovery then fills in what was published meanwhile.
            log.warning(
                "channel %r: broker subscribe failed (%s); retried on reconnect", state.name, exc
            )
        state.epoch, state.last_seq = await self._positions.get(state.name)
        state.ready = True
        held, state.held = state.held, []
        for envelope in held:
            await self._dispatch_envelope(state, envelope)

    async def _release(self, state: ChannelState, sub: Subscription) -> None:
        sub._close()
        state.subscribers.discard(sub)
        await self._leave(state)

    async def _leave(self, state: ChannelState) -> None:
        state.users -= 1
        if state.users > 0 or self._channels.get(state.name) is not state:
            return
        async with state.lock:
            if state.users > 0 or not self._connected:
                return
            was_ready, state.ready = state.ready, False
            if was_ready:
                try:
                    await self._broker.unsubscribe(self._namespace + state.name)
                except BrokerError as exc:
                    log.warning("channel %r: broker unsubscribe failed (%s)", state.name, exc)
            # Someone may have come back while we were unsubscribing: they reactivate it.
            if state.users == 0 and self._channels.get(state.name) is state:
                del self._channels[state.name]

    # -- receiving --

    async def _listen(self) -> None:
        broker = self._broker
        while True:
            try:
                data = await broker.next_published()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._reconnect(exc)
                continue
            try:
                await self._dispatch(data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pubsub: dispatching a message failed; the sweep retries")

    async def _dispatch(self, data: bytes) -> None:
        try:
            envelope = decode(data)
        except WireError as exc:
            log.warning("pubsub: dropped a malformed envelope of %d bytes: %s", len(data), exc)
            return
        state = self._channels.get(envelope.channel)
        if state is not None:
            await self._dispatch_envelope(state, envelope)

    async def _dispatch_envelope(self, state: ChannelState, envelope: Envelope) -> None:
        if not state.ready:
            if len(state.held) < self._queue_size:
                state.held.append(envelope)
            return
        if envelope.seq == 0:
            state.fan_out(envelope.message())
            return
        if envelope.epoch == state.epoch:
            if envelope.seq <= state.last_seq:
                return  # a duplicate, or already filled from the store
            if envelope.payload is not None and state.deliver(envelope.message()):
                return
        # A gap, a reference without payload, or another epoch: go through the store.
        await self._fill(state, envelope.epoch, envelope.seq, envelope)

    async def _fill(
        self, state: ChannelState, epoch: str, upto: int, envelope: Envelope | None = None
    ) -> None:
        """Deliver the stored messages of ``epoch`` up to ``upto`` that are still missing."""
        async with state.fill_lock:
            if epoch != state.epoch:
                current, _ = await self._store.last(state.name)
                if current != epoch:
                    return  # a stale envelope of an earlier epoch
                log.warning(
                    "channel %r: store epoch changed from %r to %r (history lost); "
                    "delivering the new epoch from seq 1",
                    state.name,
                    state.epoch,
                    epoch,
                )
                state.epoch, state.last_seq = epoch, 0
                state.early.clear()
            stored = pages(self._reader(state.name), after=state.last_seq, until=upto)
            async with contextlib.aclosing(stored):
                async for page in stored:
                    progressed = stale = False
                    for message in page:
                        if message.epoch != state.epoch:
                            stale = True
                            break
                        if message.seq <= state.last_seq:
                            continue  # delivered by the listener while we read
                        if message.seq != state.last_seq + 1:
                            log.warning(
                                "channel %r: seq %d..%d are no longer in the store; skipped",
                                state.name,
                                state.last_seq + 1,
                                message.seq - 1,
                            )
                            state.last_seq = message.seq - 1
                        progressed = state.deliver(message) or progressed
                    if stale or not progressed:
                        break
            if envelope is None or state.last_seq >= upto or state.epoch != envelope.epoch:
                return
            # Not in the store: trimmed by retention, or a store this process does not share
            # with the publisher. Deliver what the broker brought rather than stall.
            log.warning(
                "channel %r: seq %d..%d not found in the store",
                state.name,
                state.last_seq + 1,
                upto,
            )
            if envelope.payload is None:
                state.last_seq = upto
            else:
                state.last_seq = upto - 1
                state.deliver(envelope.message())

    async def _recover(self) -> None:
        """Deliver, for every active channel, what the store has beyond the delivered seq."""
        states = [state for state in self._channels.values() if state.ready]
        if not states:
            return
        lasts = await self._store.last_many([state.name for state in states])
        for state in states:
            position = lasts.get(state.name)
            if position is None or not state.ready:
                continue
            epoch, last = position
            if epoch == state.epoch and last <= state.last_seq:
                continue
            try:
                await self._fill(state, epoch, last)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel %r: recovery from the store failed", state.name)

    def _retry_delay(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (from 1) of a link or a listener: capped
        exponential backoff, with jitter so a fleet does not reconnect in step."""
        first, cap = self._backoff
        return min(cap, first * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _reconnect(self, error: Exception) -> None:
        lost_at = time.monotonic()
        log.warning("pubsub: broker link lost (%s); reconnecting", error)
        health = self._health
        self._health = Health(
            LinkState.RECONNECTING, time.time(), repr(error), health.reconnects, publishing=False
        )
        attempt = 0
        while True:
            try:
                await self._broker.disconnect()
            except Exception as exc:
                log.debug("pubsub: closing the broken link failed: %s", exc)
            try:
                await self._broker.connect()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = self._retry_delay(attempt)
                log.warning(
                    "pubsub: reconnect attempt %d failed (%s); next in %.2fs", attempt, exc, delay
                )
                self._health = Health(
                    LinkState.RECONNECTING,
                    self._health.since,
                    repr(exc),
                    health.reconnects,
                    publishing=False,
                )
                await asyncio.sleep(delay)
        self._health = Health(
            LinkState.CONNECTED, time.time(), self._health.last_error, health.reconnects + 1
        )
        log.warning(
            "pubsub: broker link back after %.2fs; recovering %d channel(s) from the store",
            time.monotonic() - lost_at,
            len(self._channels),
        )
        try:
            await self._recover()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pubsub: recovery after reconnect failed; the sweep retries")

    async def _sweep(self, interval: float) -> None:
        # It goes on while the broker is away: what other processes publish meanwhile still
        # arrives, an interval late.
        while True:
            await asyncio.sleep(interval)
            try:
                await self._recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pubsub: sweep failed")
