"""Where live status comes from: the :class:`StreamSource` interface a watcher polls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streamchat.twitch.api import TwitchAPI
from streamchat.twitch.helix import HelixStream

__all__ = ["HelixSource", "StreamSource", "StreamerInfo"]


@dataclass(frozen=True, slots=True)
class StreamerInfo:
    """What the watcher knows of a streamer: their Twitch user id, login and display name."""

    id: str
    login: str
    display_name: str


class StreamSource(Protocol):
    """A source of live streams, shaped like Helix ``GET /helix/streams?user_id=...``."""

    async def live_streams(self, streamers: Sequence[StreamerInfo]) -> list[HelixStream]:
        """The streams of ``streamers`` that are live now, at most one per streamer.

        A streamer without a stream in the result is offline; the source says
        nothing else about them. Their last title and game are not its
        business (Helix forgets them too): the caller keeps what it last saw.
        Order is unspecified. Failures to reach the source raise; an empty
        list always means "all offline".
        """
        ...


class HelixSource:
    """Live streams from Twitch: ``GET /helix/streams`` for the catalogue, 100 at a time."""

    def __init__(self, api: TwitchAPI) -> None:
        self._api = api

    async def live_streams(self, streamers: Sequence[StreamerInfo]) -> list[HelixStream]:
        streams = await self._api.streams([streamer.id for streamer in streamers])
        return [stream for stream in streams if stream.type == "live"]
