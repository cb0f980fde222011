"""The message handed to subscribers and returned by publish and the history reads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a channel.

    A stored message has ``seq >= 1``, the channel's gapless sequence number in ``epoch``.
    An ephemeral message (``publish(..., store=False)``) has ``seq == 0`` and ``epoch == ""``.
    ``time`` is the UNIX time (seconds) at which it was published. A stored message that
    was redacted keeps its seq and time, with an empty payload (:attr:`redacted`).
    """

    channel: str
    seq: int
    payload: bytes
    time: float
    epoch: str

    @property
    def stored(self) -> bool:
        """Whether the message is in the store (and so can be replayed)."""
        return self.seq > 0

    @property
    def redacted(self) -> bool:
        """Whether the message was redacted: stored, its payload removed, its seq kept."""
        return self.seq > 0 and not self.payload
