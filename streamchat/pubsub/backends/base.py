"""The two strategies a PubSub is built from: a Broker (transport) and a Store (history).

Implement these to add a backend; register its import string in ``_registry``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from .._message import Message

__all__ = ["Broker", "Store"]


class Broker(abc.ABC):
    """Carries opaque envelopes between processes, at most once.

    The broker keeps the set of channels it is asked to subscribe to. ``connect`` (also
    after a failure) subscribes every channel of that set, so a reconnect needs nothing
    else. Failures are reported, never hidden: a lost link makes ``next_published`` raise,
    and the PubSub then reconnects and recovers what was missed from the store.
    """

    #: The largest envelope the broker carries, in bytes; None when there is no practical limit.
    max_payload: int | None = None

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open (or reopen) the link and subscribe every channel in the set."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close the link; never raises for an already broken link."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Add ``channel`` to the set and, when connected, return once the broker confirmed it.

        Raises BrokerError when the link is down; the channel stays in the set and is
        subscribed on the next ``connect``.
        """

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` from the set and tell the broker when connected."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every process subscribed to ``channel``."""

    @abc.abstractmethod
    async def next_published(self) -> bytes:
        """Wait for the next envelope of a subscribed channel.

        Raises BrokerError when the link is lost (closed, killed, no answer to a ping, or
        a receive buffer overflowed): what was published meanwhile may be lost.
        """


class Store(abc.ABC):
    """Keeps the history of every channel, numbering messages 1, 2, 3, ... per channel.

    Each channel has an ``epoch``: a string that changes when the store lost the channel's
    history (a restarted memory store, truncated tables). A position is ``(epoch, seq)``.
    """

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and create what is missing (tables)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    async def append(
        self, channel: str, payload: bytes, *, dedupe_key: str | None = None
    ) -> tuple[Message, bool]:
        """Store ``payload`` under the channel's next seq, atomically.

        Returns ``(message, True)``; or, when ``(channel, dedupe_key)`` was stored before
        and is still retained, ``(original message, False)`` and stores nothing.
        """

    async def find(self, channel: str, dedupe_key: str) -> Message | None:
        """The retained message stored under ``(channel, dedupe_key)``, if any.

        Lets a caller acknowledge a retry without storing anything (and before
        deciding whether a new message would be allowed).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement find")

    @abc.abstractmethod
    async def read(self, channel: str, *, after: int = 0, limit: int = 100) -> list[Message]:
        """At most ``limit`` messages with ``seq > after``, oldest first."""

    @abc.abstractmethod
    async def history(
        self, channel: str, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        """The ``limit`` newest messages with ``seq < before`` (all when None), oldest first."""

    @abc.abstractmethod
    async def last(self, channel: str) -> tuple[str, int]:
        """The channel's ``(epoch, last seq)``; ``(epoch, 0)`` for a channel without messages.

        The epoch of a channel is fixed on first use, so a position taken from an empty
        channel stays valid.
        """

    async def last_many(self, channels: Iterable[str]) -> dict[str, tuple[str, int]]:
        """``last`` for several channels; channels never used may be missing from the result."""
        return {channel: await self.last(channel) for channel in channels}

    async def redact(
        self, channel: str, seqs: Iterable[int] = (), *, through: int | None = None
    ) -> list[int]:
        """Remove the payload of stored messages, keeping their seq, time and dedupe key.

        Redacted are the messages of ``channel`` numbered in ``seqs``, and with ``through``
        every one numbered up to it. Reads return them in place with an empty payload
        (``Message.redacted``), so a channel's seqs stay gapless. Returns the seqs that
        were redacted now (not those already redacted, pruned or never stored), in order.

        Optional: a store without it raises NotImplementedError.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement redact")

    async def prune(
        self, *, older_than: float | None = None, keep_last: int | None = None, limit: int = 1000
    ) -> int:
        """Delete at most ``limit`` stored messages; return how many were deleted.

        Deleted are the messages created before ``older_than`` (UNIX seconds) and those
        beyond the newest ``keep_last`` of their channel, oldest first and never leaving a
        hole: a channel's retained messages stay a contiguous run of seqs up to its last.
        Call again until it returns less than ``limit``. A channel's epoch and last seq
        never change, so positions stay valid; a ``read`` from before the oldest retained
        message starts at it, and a pruned message's dedupe key is forgotten.

        Optional: a store without it raises NotImplementedError.
        """
        self._check_prune(older_than, keep_last, limit)
        raise NotImplementedError(f"{type(self).__name__} does not implement prune")

    @staticmethod
    def _check_prune(older_than: float | None, keep_last: int | None, limit: int) -> None:
        """Raise ValueError for arguments ``prune`` cannot honour (for implementations)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if keep_last is not None and keep_last < 0:
            raise ValueError(f"keep_last must be at least 0, got {keep_last}")
        if older_than is None and keep_last is None:
            raise ValueError("prune needs older_than or keep_last")
