"""StreamWatcher: keeps every streamer's live status current, and tells their room of changes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from streamchat.actors.runtime import Actor, Command
from streamchat.pubsub import PubSubError
from streamchat.rooms.events import RoomEvents
from streamchat.store.models import Streamer
from streamchat.store.streamers import STREAM_FIELDS, StreamerStore
from streamchat.twitch.eventsub import EventSubSubscriber
from streamchat.twitch.helix import HelixStream
from streamchat.twitch.source import StreamerInfo, StreamSource

__all__ = ["Refresh", "StreamChange", "StreamWatcher", "stream_status"]

log = logging.getLogger("streamchat.actors")

#: Every this many refreshes, missing EventSub subscriptions are made again.
_RESUBSCRIBE_TICKS = 60
#: Seconds after Twitch pushed a stream going online or offline during which polling
#: (Get Streams lags behind EventSub) may not say the opposite.
_PUSH_GRACE = 120.0

ONLINE = "stream.online"
OFFLINE = "stream.offline"
UPDATE = "stream.update"


class Refresh(Command, tag="refresh", frozen=True):
    """Refresh every streamer now; the reply lists what changed."""


class Subscribe(Command, tag="subscribe", frozen=True):
    """Make the EventSub subscriptions that are missing now (e.g. for a new streamer)."""


class StreamEvent(Command, tag="stream_event", frozen=True):
    """A change Twitch pushed (EventSub), applied like a refresh's own findings.

    ``kind`` is ``stream.online``, ``stream.offline`` or ``channel.update``. Going
    through the watcher (one at a time with its refreshes, against the database's
    state) is what keeps a change that both EventSub and polling see from being
    announced twice.
    """

    broadcaster_id: str
    kind: Literal["stream.online", "stream.offline", "channel.update"]
    started_at: datetime | None = None
    title: str | None = None
    category_id: str | None = None
    category_name: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class StreamChange:
    login: str
    kind: str
    #: The streamer's new info, as the room's ``event`` carries it.
    info: dict[str, Any]


def stream_status(streamer: Streamer, stream: HelixStream | None) -> dict[str, Any]:
    """The stream fields of ``streamer`` given the source's ``stream`` (``None``: offline).

    Like Twitch, an offline channel keeps the title and game of its last stream.
    """
    if stream is None:
        return {
            "live": False,
            "title": streamer.title,
            "game_id": streamer.game_id,
            "game_name": streamer.game_name,
            "viewer_count": 0,
            "started_at": None,
            "language": streamer.language,
        }
    return {
        "live": True,
        "title": stream.title,
        "game_id": stream.game_id,
        "game_name": stream.game_name,
        "viewer_count": stream.viewer_count,
        "started_at": stream.started_at,
        "language": stream.language or streamer.language,
    }


def _event_data(streamer: Streamer, status: dict[str, Any]) -> dict[str, Any]:
    started_at: datetime | None = status["started_at"]
    return {
        "id": streamer.id,
        "login": streamer.login,
        "display_name": streamer.display_name,
        **status,
        "started_at": started_at.isoformat().replace("+00:00", "Z") if started_at else None,
    }


def _same_instant(a: datetime | None, b: datetime | None) -> bool:
    return a == b or (a is not None and b is not None and a.timestamp() == b.timestamp())


class StreamWatcher(Actor):
    """Every ``interval`` seconds, asks its source who is live and records what changed.

    The database is the state: each refresh compares the source with the
    stored rows, so a watcher that takes over from another (in another
    process) carries on where it left off. Changes are written in one
    transaction, then each is announced in the streamer's room as an
    ``event`` of kind ``stream.online``, ``stream.offline`` or ``stream.update``.
    """

    name: ClassVar[str] = "stream-watcher"
    commands: ClassVar[tuple[type[Command], ...]] = (Refresh, StreamEvent, Subscribe)

    def __init__(
        self,
        streamers: StreamerStore,
        source: StreamSource,
        events: RoomEvents,
        *,
        interval: float,
        eventsub: EventSubSubscriber | None = None,
    ) -> None:
        self.interval = interval
        self._streamers = streamers
        self._source = source
        self._events = events
        self._eventsub = eventsub
        self._ticks = 0
        # streamer ID -> (live, when): what EventSub said last, lately.
        self._pushed: dict[str, tuple[bool, float]] = {}

    async def tick(self) -> None:
        # Polling first: making a large catalogue's subscriptions takes a while.
        await self.refresh()
        if self._ticks % _RESUBSCRIBE_TICKS == 0:
            await self.subscribe()
        self._ticks += 1

    async def subscribe(self) -> None:
        """With EventSub, make sure every streamer's subscriptions exist (new streamers,
        ones Twitch revoked); polling goes on either way."""
        if self._eventsub is not None:
            await self._eventsub.ensure(streamer.id for streamer in await self._streamers.all())

    async def handle(self, command: Command) -> object:
        if isinstance(command, Subscribe):
            await self.subscribe()
            return {"subscribed": self._eventsub is not None}
        if isinstance(command, StreamEvent):
            changes = await self.apply_event(command)
        else:
            assert isinstance(command, Refresh)
            changes = await self.refresh()
        return {
            "changed": [
                {"login": change.login, "kind": change.kind, **change.info} for change in changes
            ]
        }

    async def refresh(self) -> list[StreamChange]:
        streamers = await self._streamers.all()
        streams = await self._source.live_streams(
            [StreamerInfo(s.id, s.login, s.display_name) for s in streamers]
        )
        live = {stream.user_id: stream for stream in streams}
        found = []
        now = time.monotonic()
        for streamer in streamers:
            status = stream_status(streamer, live.get(streamer.id))
            pushed = self._pushed.get(streamer.id)
            if pushed is not None and pushed[1] > now - _PUSH_GRACE:
                if status["live"] != pushed[0]:
                    continue  # Helix has not caught up with what EventSub said
            else:
                self._pushed.pop(streamer.id, None)
            found.append((streamer, status))
        return await self._record(found)

    async def apply_event(self, event: StreamEvent) -> list[StreamChange]:
        streamer = await self._streamers.get(event.broadcaster_id)
        if streamer is None:
            log.info(
                "stream watcher: %s for %s, not in the catalogue", event.kind, event.broadcaster_id
            )
            return []
        status = stream_status(streamer, None)
        if event.kind != "channel.update":
            self._pushed[streamer.id] = (event.kind == "stream.online", time.monotonic())
        if event.kind == "stream.online":
            status.update(
                live=True,
                started_at=event.started_at,
                viewer_count=streamer.viewer_count if streamer.live else 0,
            )
        elif event.kind == "channel.update":
            status.update(
                live=streamer.live,
                viewer_count=streamer.viewer_count,
                started_at=streamer.started_at,
                title=event.title if event.title is not None else streamer.title,
                game_id=event.category_id if event.category_id is not None else streamer.game_id,
                game_name=(
                    event.category_name if event.category_name is not None else streamer.game_name
                ),
                language=event.language or streamer.language,
            )
        return await self._record([(streamer, status)])

    async def _record(self, found: list[tuple[Streamer, dict[str, Any]]]) -> list[StreamChange]:
        """Write what differs from the database, then announce each change in its room."""
        writes: dict[str, dict[str, Any]] = {}
        changes: list[StreamChange] = []
        for streamer, status in found:
            kind = self._kind(streamer, status)
            if kind is None:
                continue
            writes[streamer.id] = status
            changes.append(StreamChange(streamer.login, kind, _event_data(streamer, status)))
        # First the database, so that whoever hears of a change and asks finds it there.
        await self._streamers.set_streams(writes)
        unannounced: list[str] = []
        error: PubSubError | None = None
        for change in changes:
            try:
                await self._events.announce(change.login, change.kind, change.info)
                await self._events.streamer_changed(change.kind, change.info)
            except PubSubError as exc:
                unannounced.append(change.login)
                error = exc
        if error is not None:
            # Once per refresh, not once per room: a broker outage would flood the log.
            log.warning(
                "stream watcher: %d change(s) recorded but not announced (%s): %s",
                len(unannounced),
                ", ".join(unannounced[:5]),
                error,
            )
        if changes:
            log.info(
                "stream watcher: %d change(s): %s",
                len(changes),
                ", ".join(f"{c.login} {c.kind.removeprefix('stream.')}" for c in changes[:10]),
            )
        return changes

    @staticmethod
    def _kind(streamer: Streamer, status: dict[str, Any]) -> str | None:
        if status["live"] and not streamer.live:
            return ONLINE
        if not status["live"] and streamer.live:
            return OFFLINE
        for name in STREAM_FIELDS:
            old, new = getattr(streamer, name), status[name]
            if name == "started_at":
                if not _same_instant(old, new):
                    return UPDATE
            elif old != new:
                return UPDATE
        return None
