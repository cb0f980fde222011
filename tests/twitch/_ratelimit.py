"""Helix's rate limit: a bucket of points per app (app tokens) and per app and user (user
tokens), and the ``Ratelimit-*`` headers every answer carries.

Twitch refills a bucket gradually; this one refills all at once at ``Ratelimit-Reset``.
A client that waits for ``Ratelimit-Reset``, as Twitch advises, sees no difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Bucket", "RateLimiter"]


@dataclass
class Bucket:
    limit: int
    remaining: int
    #: When the bucket is full again; ``None`` while it is full.
    resets_at: float | None = None

    def headers(self, now: float) -> dict[str, str]:
        reset = self.resets_at if self.resets_at is not None else now
        return {
            "Ratelimit-Limit": str(self.limit),
            "Ratelimit-Remaining": str(self.remaining),
            "Ratelimit-Reset": str(math.ceil(reset)),
        }


class RateLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._buckets: dict[tuple[str, str | None], Bucket] = {}

    def configure(self, limit: int, window: float) -> None:
        """New size and window; every bucket starts full."""
        self.limit, self.window = limit, window
        self._buckets.clear()

    def take(self, key: tuple[str, str | None]) -> tuple[bool, Bucket]:
        """Spend one point of ``key``'s bucket: whether there was one, and the bucket."""
        now = self._clock()
        bucket = self._buckets.setdefault(key, Bucket(self.limit, self.limit))
        if bucket.resets_at is not None and now >= bucket.resets_at:
            bucket.remaining, bucket.resets_at = bucket.limit, None
        if bucket.remaining == 0:
            return False, bucket
        bucket.remaining -= 1
        if bucket.resets_at is None:
            bucket.resets_at = now + self.window
        return True, bucket
