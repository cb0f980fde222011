"""Backoff: capped exponential waits, with jitter that stays within half to all of them."""

from __future__ import annotations

import pytest

from streamchat.backoff import Backoff


def test_waits_double_from_the_first_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=3.0, jitter=False)
    assert [backoff.delay(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(0) == 0.5  # attempt numbers start at 1; 0 is treated as the first


@pytest.mark.parametrize("attempt", [1, 2, 3, 10])
def test_jitter_stays_between_half_and_the_whole_wait(attempt: int) -> None:
    exact = Backoff(first=0.1, cap=2.0, jitter=False).delay(attempt)
    jittered = [Backoff(first=0.1, cap=2.0).delay(attempt) for _ in range(200)]
    assert all(exact / 2 <= delay <= exact for delay in jittered)
    assert len(set(jittered)) > 1  # processes that failed together spread out


async def test_wait_sleeps_the_delay_it_returns() -> None:
    assert await Backoff(first=0.001, cap=0.001, jitter=False).wait(3) == 0.001
