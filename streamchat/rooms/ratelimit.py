"""A sliding-window rate limiter, in memory, bounded in size."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter", "RecentKeys"]


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds for each key.

    The limit is passed per hit, so one limiter serves keys with different
    allowances (a streamer in their own room gets more).
    """

    def __init__(
        self,
        *,
        window: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def hit(self, key: Hashable, limit: int) -> float | None:
        """Count a hit; return ``None`` when allowed, else seconds until one is."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._prune(now)
            hits = self._hits[key] = deque()
        horizon = now - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] - horizon
        hits.append(now)
        return None

    def peek(self, key: Hashable, limit: int) -> float | None:
        """Like :meth:`hit`, without counting: ``None`` when a hit would be allowed."""
        hits = self._hits.get(key)
        if not hits:
            return None
        horizon = self._clock() - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] - horizon
        return None

    def refund(self, key: Hashable) -> None:
        """Take back the newest hit of ``key``: what it counted did not happen after all."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    def _prune(self, now: float) -> None:
        # Keys whose newest hit left the window carry no state worth keeping.
        horizon = now - self.window
        stale = [key for key, hits in self._hits.items() if not hits or hits[-1] <= horizon]
        for key in stale:
            del self._hits[key]
        if len(self._hits) >= self._max_keys:
            # Every key is active: forget the oldest half rather than grow without bound.
            for key in list(self._hits)[: len(self._hits) // 2]:
                del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)


class RecentKeys:
    """Keys seen within the last ``ttl`` seconds, at most ``max_keys`` of them."""

    def __init__(
        self,
        *,
        ttl: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._clock = clock
        # Insertion order is age order: the oldest are at the front.
        self._seen: dict[Hashable, float] = {}

    def add(self, key: Hashable) -> None:
        now = self._clock()
        self._seen.pop(key, None)
        self._seen[key] = now
        self._expire(now)

    def seen(self, key: Hashable) -> bool:
        at = self._seen.get(key)
        return at is not None and self._clock() - at < self._ttl

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if now - at < self._ttl and len(seen) <= self._max_keys:
                return
            del seen[key]

    def __len__(self) -> int:
        return len(self._seen)
