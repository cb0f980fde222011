"""Exceptions raised by streamchat.pubsub.

PubSubError            every error this library raises
├── ConfigurationError a bad URL, an unknown scheme, a missing optional dependency
├── BrokerError        the broker link failed or is down
├── StoreError         the store failed (the database is unreachable, a query failed)
└── Lagged             a subscriber fell behind its bounded queue and was closed
"""

from __future__ import annotations

__all__ = ["BrokerError", "ConfigurationError", "Lagged", "PubSubError", "StoreError"]


class PubSubError(Exception):
    """Base class of every error raised by streamchat.pubsub."""


class ConfigurationError(PubSubError):
    """A broker or store could not be built from its URL or options."""


class BrokerError(PubSubError):
    """The broker link failed or is down."""


class StoreError(PubSubError):
    """The store failed to read or write."""


class Lagged(PubSubError):
    """The subscriber fell more than its queue size behind and was closed.

    Resubscribe with ``since=exc.since`` to replay what was missed from the store.
    """

    def __init__(self, channel: str, epoch: str, last_seq: int) -> None:
        super().__init__(
            f"subscriber of {channel!r} fell behind and was closed after seq {last_seq}; "
            f"resubscribe with since=({epoch!r}, {last_seq})"
        )
        self.channel = channel
        self.epoch = epoch
        self.last_seq = last_seq

    @property
    def since(self) -> tuple[str, int]:
        """The position to resubscribe from: the last message the subscriber received."""
        return (self.epoch, self.last_seq)
