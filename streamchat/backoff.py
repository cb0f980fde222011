"""How long a loop that failed waits before it tries again.

Every retry loop of the server and its tools (the chat terminal's reconnects, the
actor supervisor's restarts, a room feed's resubscription, presence writes) waits by
one rule: capped exponential backoff, with jitter so a fleet of processes that failed
together does not retry in step. The pub/sub library, standalone, has the same rule
for its broker links (``PubSub(reconnect_backoff=…)``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait ``first`` seconds before the first retry, twice as long before each next
    one, never more than ``cap``; with ``jitter``, a random half to all of that."""

    first: float
    cap: float
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1 for the first retry)."""
        delay = min(self.cap, self.first * 2.0 ** max(0, attempt - 1))
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay

    async def wait(self, attempt: int) -> float:
        """Sleep before retry number ``attempt``; returns how long it slept."""
        delay = self.delay(attempt)
        await asyncio.sleep(delay)
        return delay
