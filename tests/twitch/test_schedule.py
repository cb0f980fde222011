from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from importlib import resources

import pytest

from streamchat.twitch.helix import HelixStream
from streamchat.twitch.schedule import CYCLE, SampleSchedule
from streamchat.twitch.source import StreamerInfo

SPEED = 600.0
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()
#: Wall seconds after which every streamer has gone live and offline at least once.
WINDOW = 4 * CYCLE / SPEED


def sample_streamers() -> list[StreamerInfo]:
    raw = json.loads(
        resources.files("streamchat.twitch").joinpath("data/helix_sample.json").read_text()
    )
    return [
        StreamerInfo(user["id"], user["login"], user["display_name"])
        for user in raw["users"]["data"]
    ]


STREAMERS = sample_streamers()
STRANGER = StreamerInfo("123456789", "somebody_new", "Somebody_New")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def timeline(
    schedule: SampleSchedule, streamer: StreamerInfo, start: float, seconds: float
) -> list[tuple[float, HelixStream | None]]:
    """States of ``streamer`` sampled every 1/10 of a virtual minute."""
    step = 6 / SPEED
    times = [start + i * step for i in range(int(seconds / step) + 1)]
    return [(t, schedule.state_at(streamer, t)) for t in times]


def test_same_seed_same_timeline() -> None:
    first, second = SampleSchedule(seed=7, speed=SPEED), SampleSchedule(seed=7, speed=SPEED)
    for streamer in [*STREAMERS, STRANGER]:
        for t in range(10):
            when = T0 + t * 0.37
            assert first.state_at(streamer, when) == second.state_at(streamer, when)
            assert first.next_change(streamer, when) == second.next_change(streamer, when)


def test_different_seeds_differ() -> None:
    one, other = SampleSchedule(seed=1, speed=SPEED), SampleSchedule(seed=2, speed=SPEED)
    times = [T0 + i * 0.1 for i in range(30)]
    live_one = [one.state_at(s, t) is not None for s in STREAMERS for t in times]
    live_other = [other.state_at(s, t) is not None for s in STREAMERS for t in times]
    assert live_one != live_other


def test_every_streamer_goes_live_and_offline_within_the_window() -> None:
    schedule = SampleSchedule(speed=SPEED)
    for streamer in [*STREAMERS, STRANGER]:
        states = [stream is not None for _, stream in timeline(schedule, streamer, T0, WINDOW)]
        went_live = any(not a and b for a, b in itertools.pairwise(states))
        went_offline = any(a and not b for a, b in itertools.pairwise(states))
        assert went_live, streamer.login
        assert went_offline, streamer.login


def test_streams_look_like_helix() -> None:
    schedule = SampleSchedule(speed=SPEED)
    for streamer in [*STREAMERS, STRANGER]:
        streams = [s for _, s in timeline(schedule, streamer, T0, WINDOW) if s is not None]
        assert streams, streamer.login
        for stream in streams:
            assert stream.type == "live"
            assert (stream.user_id, stream.user_login, stream.user_name) == (
                streamer.id,
                streamer.login,
                streamer.display_name,
            )
            assert stream.id.isdigit()
            assert stream.game_id
            assert stream.game_name
            assert stream.title
            assert stream.viewer_count >= 0
            assert stream.language == "en"
            assert stream.started_at is not None
            assert stream.started_at.tzinfo is not None


def test_titles_and_games_change_while_live() -> None:
    schedule = SampleSchedule(speed=SPEED)
    titles = games = 0
    for streamer in STREAMERS:
        history = [s for _, s in timeline(schedule, streamer, T0, 10 * CYCLE / SPEED) if s]
        for before, after in itertools.pairwise(history):
            if before.id == after.id:  # the same stream
                titles += before.title != after.title
                games += before.game_id != after.game_id
    assert titles > 10
    assert games > 5


def test_viewer_count_wobbles_in_small_steps_once_the_stream_is_up() -> None:
    schedule = SampleSchedule(speed=SPEED)
    changes = 0
    for streamer in [*STREAMERS, STRANGER]:
        history = timeline(schedule, streamer, T0, 10 * CYCLE / SPEED)
        for (_, before), (t, after) in itertools.pairwise(history):
            if before is None or after is None or before.id != after.id:
                continue
            assert after.started_at is not None
            if (t - after.started_at.timestamp()) * SPEED < 5 * 60:
                continue  # viewers are still arriving
            changes += before.viewer_count != after.viewer_count
            assert after.viewer_count == pytest.approx(before.viewer_count, rel=0.25, abs=2)
    assert changes > 50


def test_sample_streamers_sometimes_play_their_own_game() -> None:
    schedule = SampleSchedule(speed=SPEED)
    pixel = next(s for s in STREAMERS if s.login == "pixelpaladin")
    history = [s for _, s in timeline(schedule, pixel, T0, 20 * CYCLE / SPEED) if s]
    assert any(s.game_name == "Special Events" for s in history)
    assert any(s.title == "!drops day 66 of the grind" for s in history)
    assert any(s.game_name != "Special Events" for s in history)


def test_started_at_is_the_segment_start_and_stays_put() -> None:
    schedule = SampleSchedule(speed=SPEED)
    for streamer in STREAMERS:
        went_live = schedule.next_change(streamer, T0)
        if schedule.state_at(streamer, went_live) is None:  # that change was going offline
            went_live = schedule.next_change(streamer, went_live)
        went_offline = schedule.next_change(streamer, went_live)
        segment = timeline(schedule, streamer, went_live, went_offline - went_live - 1e-6)
        streams = [stream for _, stream in segment]
        assert all(stream is not None for stream in streams), streamer.login
        assert len({s.started_at for s in streams if s}) == 1
        assert len({s.id for s in streams if s}) == 1
        started_at = streams[0].started_at if streams[0] else None
        assert started_at is not None
        assert started_at.timestamp() == pytest.approx(went_live, abs=1e-5)


def test_stream_id_changes_between_streams() -> None:
    schedule = SampleSchedule(speed=SPEED)
    streamer = STREAMERS[0]
    ids = {s.id for _, s in timeline(schedule, streamer, T0, 10 * CYCLE / SPEED) if s}
    assert len(ids) >= 3


async def test_live_streams_lists_only_live_streamers_at_the_clock() -> None:
    clock = Clock()
    schedule = SampleSchedule(speed=SPEED, clock=clock)
    seen_partial = False
    for i in range(20):
        clock.now = T0 + i * 0.25
        streams = await schedule.live_streams([*STREAMERS, STRANGER])
        expected = [schedule.state_at(s, clock.now) for s in [*STREAMERS, STRANGER]]
        assert streams == [s for s in expected if s is not None]
        seen_partial |= 0 < len(streams) < len(STREAMERS)
    assert seen_partial
    assert await schedule.live_streams([]) == []


def test_next_change_is_where_the_status_flips() -> None:
    schedule = SampleSchedule(speed=SPEED)
    for streamer in [*STREAMERS, STRANGER]:
        when = T0
        for _ in range(6):
            change = schedule.next_change(streamer, when)
            assert when < change <= when + 3 * CYCLE / SPEED
            live_before = schedule.state_at(streamer, when) is not None
            # Constant until the change, flipped from it on.
            for _, stream in timeline(schedule, streamer, when, change - when - 1e-6):
                assert (stream is not None) == live_before
            assert (schedule.state_at(streamer, change) is not None) != live_before
            assert (schedule.state_at(streamer, change - 1e-4) is not None) == live_before
            when = change


def test_next_change_at_speed_one() -> None:
    schedule = SampleSchedule()
    streamer = STREAMERS[3]
    change = schedule.next_change(streamer, T0)
    assert T0 < change <= T0 + 3 * CYCLE
    before = schedule.state_at(streamer, change - 0.01)
    assert (schedule.state_at(streamer, change) is None) != (before is None)


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf"), float("-inf")])
def test_speed_must_be_finite_and_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        SampleSchedule(speed=speed)


@pytest.mark.parametrize("seed", [1.5, "1", None])
def test_seed_must_be_an_int(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        SampleSchedule(seed=seed)  # type: ignore[arg-type]


def test_far_future_is_computed_directly() -> None:
    schedule = SampleSchedule(speed=SPEED)
    year_2100 = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    streamer = STREAMERS[0]
    change = schedule.next_change(streamer, year_2100)
    assert year_2100 < change
    after = schedule.state_at(streamer, change + 0.01)
    before = schedule.state_at(streamer, change - 0.01)
    assert (after is None) != (before is None)
    stream = after or before
    assert stream is not None
    assert stream.started_at is not None
    assert stream.started_at.year in (2099, 2100)
