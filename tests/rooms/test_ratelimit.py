from __future__ import annotations

import pytest

from streamchat.rooms.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_refuses_until_the_window_slides() -> None:
    clock = Clock()
    limiter = RateLimiter(window=30, clock=clock)
    for _ in range(20):
        assert limiter.hit("alice", 20) is None
        clock.now += 1
    # 20 hits at t=1000..1019; the oldest leaves the window at t=1030.
    retry = limiter.hit("alice", 20)
    assert retry == pytest.approx(10.0)
    clock.now = 1030.0
    assert limiter.hit("alice", 20) is None
    assert limiter.hit("alice", 20) is not None


def test_keys_and_allowances_are_independent() -> None:
    clock = Clock()
    limiter = RateLimiter(window=30, clock=clock)
    for _ in range(20):
        assert limiter.hit(("alice", "room1"), 20) is None
    assert limiter.hit(("alice", "room1"), 20) is not None
    assert limiter.hit(("alice", "room2"), 20) is None
    for _ in range(100):
        assert limiter.hit(("streamer", "room1"), 100) is None
    assert limiter.hit(("streamer", "room1"), 100) is not None


def test_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(window=30, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.hit(f"user{i}", 20)
        clock.now += 0.001
    assert len(limiter) <= 100
    # Idle keys are the first to go.
    clock.now += 60
    limiter.hit("fresh", 20)
    assert len(limiter) == 1
