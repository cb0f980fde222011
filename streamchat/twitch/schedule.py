"""An offline :class:`StreamSource`: a made-up but Twitch-like timeline of who is live.

Time is cut into virtual cycles of :data:`CYCLE` seconds (virtual time is wall
time times ``speed``), shifted per streamer by a hashed phase. A streamer goes
live at the start of a cycle and offline after a hashed 35-85 % of it; about
one cycle in five stays offline throughout. While live, the title (and less
often the game) may change every :data:`SLOT` virtual seconds, and the viewer
count wobbles around a per-streamer base once per virtual minute.

Every value is a pure function of the seed, the streamer id and the time,
hashed with BLAKE2 (never the salted ``hash()``): processes with the same seed
agree, and one that takes over from another carries on the same timeline.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources

from streamchat.twitch.helix import HelixStream
from streamchat.twitch.source import StreamerInfo, StreamSource

__all__ = ["CYCLE", "SLOT", "SampleSchedule"]

#: Virtual seconds from one go-live of a streamer to their next possible one.
CYCLE = 12 * 60.0
#: Virtual seconds between chances to change title or game.
SLOT = 3 * 60.0

# Well-known categories with their Helix game ids, besides those of the sample data.
_KNOWN_GAMES = [
    ("21779", "League of Legends"),
    ("32982", "Grand Theft Auto V"),
    ("27471", "Minecraft"),
    ("33214", "Fortnite"),
    ("32399", "Counter-Strike"),
    ("18122", "World of Warcraft"),
    ("512953", "ELDEN RING"),
    ("511224", "Apex Legends"),
    ("138585", "Hearthstone"),
    ("509660", "Art"),
]

_TITLES = [
    "{game} with chat | !discord",
    "first playthrough, no spoilers pls",
    "day {n} of the grind",
    "NEW PB ATTEMPTS - road to sub {n}",
    "chill vibes | chatting with you all",
    "ranked grind | {game}",
    "community night: you pick the game",
    "charity marathon hour {n}",
    "{game} all day, come hang",
    "learning the new patch",
]


@cache
def _sample_streams() -> dict[str, HelixStream]:
    raw = json.loads(
        resources.files("streamchat.twitch").joinpath("data/helix_sample.json").read_text()
    )
    streams = (HelixStream.model_validate(item) for item in raw["streams"]["data"])
    return {stream.user_id: stream for stream in streams}


class SampleSchedule(StreamSource):
    """Live streams following a deterministic schedule; no network, no state.

    ``speed`` scales time for demos and tests: at 600 a 12-minute cycle takes
    1.2 wall seconds. ``clock`` gives the wall time (Unix seconds) that
    :meth:`live_streams` asks about.
    """

    def __init__(
        self, seed: int = 0, speed: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, not {seed!r}")
        if not isinstance(speed, int | float) or not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a finite number > 0, not {speed!r}")
        self._seed = seed
        self._speed = float(speed)
        self._clock = clock
        self._samples = _sample_streams()
        games = {(s.game_id, s.game_name) for s in self._samples.values()}
        self._games = sorted(games | set(_KNOWN_GAMES))

    async def live_streams(self, streamers: Sequence[StreamerInfo]) -> list[HelixStream]:
        now = self._clock()
        states = (self.state_at(streamer, now) for streamer in streamers)
        return [stream for stream in states if stream is not None]

    def state_at(self, streamer: StreamerInfo, when: float) -> HelixStream | None:
        """The stream of ``streamer`` at wall time ``when``, or None while offline."""
        v = when * self._speed
        cycle, start, length = self._cycle(streamer.id, v)
        if v - start >= length:
            return None
        slot = int((v - start) // SLOT)
        game_id, game_name, title = self._show(streamer.id, cycle, slot)
        sample = self._samples.get(streamer.id)
        return HelixStream(
            id=str(40_000_000_000 + self._digest(streamer.id, "stream", cycle) % 10**10),
            user_id=streamer.id,
            user_login=streamer.login,
            user_name=streamer.display_name,
            game_id=game_id,
            game_name=game_name,
            type="live",
            title=title,
            viewer_count=self._viewers(streamer.id, v, start),
            started_at=datetime.fromtimestamp(start / self._speed, UTC),
            language=sample.language if sample else "en",
        )

    def next_change(self, streamer: StreamerInfo, after: float) -> float:
        """The first wall time later than ``after`` at which ``streamer`` goes live or offline.

        From the returned instant on, :meth:`state_at` reports the new status.
        """
        v = after * self._speed
        live = self._live(streamer.id, after)
        first, _, _ = self._cycle(streamer.id, v)
        # No more than two cycles in a row are skipped, so four cycles hold an edge.
        for cycle in range(first, first + 4):
            start = self._phase(streamer.id) + cycle * CYCLE
            length = self._length(streamer.id, cycle)
            for edge in (start, start + length) if length else ():
                if edge > v:
                    return self._settle(streamer.id, edge / self._speed, live)
        raise AssertionError("unreachable: every third cycle is live")

    def _settle(self, streamer_id: str, when: float, live: bool) -> float:
        # Dividing by speed may round to just before the edge; step up to the first
        # representable instant that is past it.
        for _ in range(16):
            if self._live(streamer_id, when) != live:
                break
            when = math.nextafter(when, math.inf)
        return when

    def _live(self, streamer_id: str, when: float) -> bool:
        v = when * self._speed
        _, start, length = self._cycle(streamer_id, v)
        return v - start < length

    def _cycle(self, streamer_id: str, v: float) -> tuple[int, float, float]:
        """The index, virtual start and live length of the cycle holding virtual time ``v``."""
        phase = self._phase(streamer_id)
        cycle = math.floor((v - phase) / CYCLE)
        return cycle, phase + cycle * CYCLE, self._length(streamer_id, cycle)

    def _phase(self, streamer_id: str) -> float:
        return self._fraction(streamer_id, "phase") * CYCLE

    def _length(self, streamer_id: str, cycle: int) -> float:
        # Within each pair of cycles at most one is skipped (one in five overall), so a
        # streamer is never offline for more than three cycles in a row.
        skip = self._fraction(streamer_id, "skip", cycle // 2)
        if skip < 0.4 and cycle % 2 == (skip < 0.2):
            return 0.0
        return (0.35 + 0.5 * self._fraction(streamer_id, "length", cycle)) * CYCLE

    def _show(self, streamer_id: str, cycle: int, slot: int) -> tuple[str, str, str]:
        """Game id, game name and title in ``slot`` of a live ``cycle``."""
        sample = self._samples.get(streamer_id)
        game_slot = self._last_change(streamer_id, "game", cycle, slot, 0.35)
        if sample and self._fraction(streamer_id, "own game", cycle, game_slot) < 0.5:
            game_id, game_name = sample.game_id, sample.game_name
        else:
            game_id, game_name = self._games[
                self._digest(streamer_id, "game", cycle, game_slot) % len(self._games)
            ]
        # A new game comes with a new title.
        title_slot = max(game_slot, self._last_change(streamer_id, "title", cycle, slot, 0.7))
        own = self._fraction(streamer_id, "own title", cycle, title_slot) < 0.5
        if sample and game_id == sample.game_id and own:
            return game_id, game_name, sample.title
        pick = self._digest(streamer_id, "title", cycle, title_slot)
        title = _TITLES[pick % len(_TITLES)].format(game=game_name, n=pick // 256 % 99 + 1)
        return game_id, game_name, title

    def _last_change(self, streamer_id: str, what: str, cycle: int, slot: int, p: float) -> int:
        """The latest slot up to ``slot`` where ``what`` changed: slot 0, else with chance ``p``."""
        # Bounded by the slots in one cycle (at most four), so still O(1).
        while slot > 0 and self._fraction(streamer_id, what + " change", cycle, slot) >= p:
            slot -= 1
        return slot

    def _viewers(self, streamer_id: str, v: float, start: float) -> int:
        sample = self._samples.get(streamer_id)
        if sample:
            base = float(sample.viewer_count)
        else:
            base = 10 ** (1 + 3 * self._fraction(streamer_id, "audience"))
        minute = math.floor(v / 60)
        # Averaging three minutes of noise keeps each step small.
        noise = sum(self._fraction(streamer_id, "viewers", minute - i) for i in range(3))
        # Viewers trickle in over the first minutes of a stream.
        ramp = min(1.0, (minute - math.floor(start / 60) + 1) / 4)
        return max(0, round(base * (1 + 0.4 * (noise / 3 - 0.5)) * ramp))

    def _digest(self, *parts: object) -> int:
        key = "\x1f".join(map(str, (self._seed, *parts))).encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")

    def _fraction(self, *parts: object) -> float:
        """A hashed number in [0, 1)."""
        return self._digest(*parts) / 2**64
