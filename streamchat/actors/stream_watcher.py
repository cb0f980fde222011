"""StreamWatcher: keeps every streamer's live status current, and tells their room of changes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from streamchat.actors.runtime import Actor, Command
from streamchat.pubsub import PubSubError
from streamchat.rooms.events import RoomEvents
from streamchat.store.models import Streamer
from streamchat.store.streamers import STREAM_FIELDS, StreamerStore
from streamchat.twitch.helix import HelixStream
from streamchat.twitch.source import StreamerInfo, StreamSource

__all__ = ["Refresh", "StreamChange", "StreamWatcher", "stream_status"]

log = logging.getLogger("streamchat.actors")

ONLINE = "stream.online"
OFFLINE = "stream.offline"
UPDATE = "stream.update"


class Refresh(Command, tag="refresh", frozen=True):
    """Refresh every streamer now; the reply lists what changed."""


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
    commands: ClassVar[tuple[type[Command], ...]] = (Refresh,)

    def __init__(
        self,
        streamers: StreamerStore,
        source: StreamSource,
        events: RoomEvents,
        *,
        interval: float,
    ) -> None:
        self.interval = interval
        self._streamers = streamers
        self._source = source
        self._events = events

    async def tick(self) -> None:
        await self.refresh()

    async def handle(self, command: Command) -> object:
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
        writes: dict[str, dict[str, Any]] = {}
        changes: list[StreamChange] = []
        for streamer in streamers:
            status = stream_status(streamer, live.get(streamer.id))
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
