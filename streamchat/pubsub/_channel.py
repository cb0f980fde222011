"""Per-channel fan-out state: the local subscribers and the last seq delivered to them."""

from __future__ import annotations

import asyncio
import logging

from ._message import Message
from ._subscription import Subscription
from ._wire import Envelope

__all__ = ["ChannelState"]

log = logging.getLogger("streamchat.pubsub")


class ChannelState:
    """One channel with local subscribers.

    ``last_seq`` only ever grows by one (``deliver``), so whatever path a stored message
    takes (broker, gap fill, sweep, reconnect recovery) subscribers see each seq once,
    in order.
    """

    __slots__ = (
        "early",
        "epoch",
        "fill_lock",
        "held",
        "last_seq",
        "lock",
        "name",
        "ready",
        "subscribers",
        "users",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[Subscription] = set()
        self.epoch = ""
        self.last_seq = 0
        # Not ready until subscribed on the broker and positioned on the store's last seq;
        # envelopes arriving meanwhile are held, then dispatched.
        self.ready = False
        self.held: list[Envelope] = []
        # Serialises broker subscribe/unsubscribe of this channel.
        self.lock = asyncio.Lock()
        # Serialises store reads that fill gaps, so two fillers do not fetch the same range.
        self.fill_lock = asyncio.Lock()
        # Open subscriptions, counting those still being opened.
        self.users = 0
        # Messages published by this process that were stored after one not delivered yet:
        # delivered as soon as their predecessor is, whichever path brings it.
        self.early: dict[int, Message] = {}

    def fan_out(self, message: Message) -> None:
        """Hand ``message`` to every subscriber without waiting; drop those that lagged."""
        lagging: list[Subscription] | None = None
        for sub in self.subscribers:
            if not sub._push(message):
                if lagging is None:
                    lagging = []
                lagging.append(sub)
        if lagging is not None:
            for sub in lagging:
                self.subscribers.discard(sub)
            log.info("channel %r: %d subscriber(s) lagged and were closed", self.name, len(lagging))

    def deliver(self, message: Message) -> bool:
        """Fan out a stored message if it is the next seq; False (and nothing done) otherwise."""
        if message.seq != self.last_seq + 1 or message.epoch != self.epoch:
            return False
        self.last_seq = message.seq
        self.fan_out(message)
        if self.early:
            self._deliver_early()
        return True

    def deliver_local(self, message: Message, limit: int) -> None:
        """Deliver a message this process just stored, without waiting for the broker.

        Stored after one that is not delivered yet (two publishers raced), it waits in
        ``early`` (at most ``limit`` of them) for its predecessor.
        """
        if self.deliver(message):
            return
        if (
            message.epoch == self.epoch
            and message.seq > self.last_seq + 1
            and len(self.early) < limit
        ):
            self.early[message.seq] = message

    def _deliver_early(self) -> None:
        early = self.early
        while (message := early.pop(self.last_seq + 1, None)) is not None:
            if message.epoch != self.epoch:
                break
            self.last_seq = message.seq
            self.fan_out(message)
        for seq in [seq for seq in early if seq <= self.last_seq]:
            del early[seq]
