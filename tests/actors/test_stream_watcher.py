"""The stream watcher: the database follows the source, and each change is announced in its room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from streamchat.actors.stream_watcher import StreamWatcher
from streamchat.protocol import EventFrame
from streamchat.pubsub import PubSub, Subscription
from streamchat.rooms.events import RoomEvents
from streamchat.rooms.feeds import channel_of
from streamchat.store.database import Database
from streamchat.store.streamers import StreamerStore
from streamchat.twitch.sample import sample_streamer_rows
from streamchat.twitch.schedule import SampleSchedule
from streamchat.twitch.source import StreamerInfo
from tests.ws.conftest import ROOM, ServerFactory

SPEED = 600.0
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def streamers(database_url: str) -> AsyncIterator[StreamerStore]:
    db = Database(database_url)
    await db.migrate()
    store = StreamerStore(db)
    # PostgreSQL's database is shared by the session: start from the sample again.
    await store.upsert(sample_streamer_rows())
    try:
        yield store
    finally:
        await db.close()


async def events_of(sub: Subscription, count: int) -> list[EventFrame]:
    out = []
    async with asyncio.timeout(5):
        while len(out) < count:
            message = await anext(sub)
            out.append(msgspec.json.decode(message.payload, type=EventFrame))
    return out


async def test_refresh_writes_what_changed_then_announces_it(streamers: StreamerStore) -> None:
    clock = Clock(T0)
    schedule = SampleSchedule(seed=5, speed=SPEED, clock=clock)
    async with PubSub() as ps:
        watcher = StreamWatcher(streamers, schedule, RoomEvents(ps), interval=1.0)
        rows = await streamers.all()
        target = next(s for s in rows if s.login == ROOM)
        info = StreamerInfo(target.id, target.login, target.display_name)

        # The first refresh brings every streamer in line with the source.
        await watcher.refresh()
        for streamer in await streamers.all():
            expected = schedule.state_at(
                StreamerInfo(streamer.id, streamer.login, streamer.display_name), clock.now
            )
            assert streamer.live is (expected is not None), streamer.login
            if expected is not None:
                assert streamer.title == expected.title
                assert streamer.game_name == expected.game_name
                assert streamer.viewer_count == expected.viewer_count
                assert streamer.started_at == expected.started_at
            else:
                assert streamer.viewer_count == 0
                assert streamer.started_at is None
        # Nothing moved: nothing to say.
        assert await watcher.refresh() == []

        async with ps.subscribe(channel_of(ROOM)) as sub:
            for _ in range(2):
                was_live = schedule.state_at(info, clock.now) is not None
                clock.now = schedule.next_change(info, clock.now)
                changes = [c for c in await watcher.refresh() if c.login == ROOM]
                kind = "stream.offline" if was_live else "stream.online"
                assert [c.kind for c in changes] == [kind]
                (event,) = [e for e in await events_of(sub, 1) if e.kind.startswith("stream.")]
                assert event.room == ROOM
                assert event.kind == kind
                assert event.data["login"] == ROOM
                assert event.data["live"] is (not was_live)
                stored = await streamers.get(target.id)
                assert stored is not None
                assert stored.live is (not was_live)
                if not was_live:
                    stream = schedule.state_at(info, clock.now)
                    assert stream is not None
                    assert stream.started_at is not None
                    assert event.data["title"] == stream.title == stored.title
                    assert event.data["started_at"] == stream.started_at.isoformat().replace(
                        "+00:00", "Z"
                    )
                else:
                    # Offline keeps the last title and game, like Twitch.
                    assert event.data["viewer_count"] == 0
                    assert event.data["started_at"] is None
                    assert event.data["title"] == stored.title != ""


async def test_an_update_while_live(streamers: StreamerStore) -> None:
    clock = Clock(T0)
    schedule = SampleSchedule(seed=5, speed=SPEED, clock=clock)
    rows = await streamers.all()
    target = next(s for s in rows if s.login == ROOM)
    info = StreamerInfo(target.id, target.login, target.display_name)
    if schedule.state_at(info, clock.now) is None:
        clock.now = schedule.next_change(info, clock.now)
    async with PubSub() as ps:
        watcher = StreamWatcher(streamers, schedule, RoomEvents(ps), interval=1.0)
        await watcher.refresh()
        before = schedule.state_at(info, clock.now)
        assert before is not None
        # A virtual minute later the audience has moved; still live.
        clock.now += 61 / SPEED
        after = schedule.state_at(info, clock.now)
        assert after is not None
        assert after.id == before.id
        changes = {c.login: c for c in await watcher.refresh()}
        if after.viewer_count == before.viewer_count and after.title == before.title:
            assert ROOM not in changes
        else:
            assert changes[ROOM].kind == "stream.update"
            assert changes[ROOM].info["viewer_count"] == after.viewer_count


async def test_live_events_reach_a_websocket_client(server_factory: ServerFactory) -> None:
    """The forever loop, in the server, tells a subscribed client of going online and offline."""
    async with (
        server_factory(run_singletons=True, watch_speed=SPEED, watch_interval=0.05) as server,
        server.connect() as chat,
    ):
        await chat.subscribe(ROOM)
        kinds: set[str] = set()
        last: EventFrame | None = None
        async with asyncio.timeout(20):
            while not {"stream.online", "stream.offline"} <= kinds:
                event = await chat.next_event(20)
                if isinstance(event, EventFrame):
                    assert event.room == ROOM
                    assert event.data["login"] == ROOM
                    kinds.add(event.kind)
                    last = event
        # Hold the watcher still, then compare the API with the last word the room had.
        await server.services.cluster.command("stream-watcher", "pause", {})
        with contextlib.suppress(TimeoutError):
            while True:
                event = await chat.next_event(0.3)
                if isinstance(event, EventFrame):
                    last = event
        assert last is not None
        async with httpx.AsyncClient(base_url=server.url) as http:
            shown = (await http.get(f"/api/streamers/{ROOM}")).json()
        for field in ("live", "title", "game_name", "viewer_count"):
            assert shown[field] == last.data[field], field
