"""Room events: notices that are not chat messages (stream online, a system broadcast),
and changes in the streamer directory.

Events are not stored and not replayed; they reach whoever is subscribed when
they are sent. Anything that runs beside the rooms (an actor in a worker
process included) announces them here, through the broker, without needing
the per-process fan-out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streamchat.protocol import EventFrame, StreamerChange, encode
from streamchat.pubsub import PubSub
from streamchat.rooms.feeds import channel_of

__all__ = ["BROADCAST_CHANNEL", "DIRECTORY_CHANNEL", "RoomBroadcast", "RoomEvents"]

#: Events for every room go once to every server process, which hands them to its rooms.
BROADCAST_CHANNEL = "rooms:broadcast"
#: Changes in the streamer directory, for the connections watching it on every process.
DIRECTORY_CHANNEL = "streamers:changes"


class RoomBroadcast(msgspec.Struct, frozen=True):
    """An event for every room, as it travels between processes."""

    kind: str
    data: dict[str, Any]


class RoomEvents:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def announce(self, room: str, kind: str, data: dict[str, Any]) -> None:
        """Send an ``event`` to everyone in ``room`` now, on every process."""
        await self.send(room, encode(EventFrame(room, kind, data)))

    async def send(self, room: str, *frames: bytes) -> None:
        """Send frames to everyone in ``room`` now, on every process (not stored)."""
        for frame in frames:
            await self._pubsub.publish(channel_of(room), frame, store=False)

    async def broadcast(self, kind: str, data: dict[str, Any]) -> None:
        """Send an ``event`` to every room, on every server process."""
        await self._pubsub.publish(
            BROADCAST_CHANNEL, encode(RoomBroadcast(kind, data)), store=False
        )

    async def streamer_changed(self, kind: str, data: dict[str, Any]) -> None:
        """Tell every connection watching the directory, on every process."""
        await self._pubsub.publish(
            DIRECTORY_CHANNEL, encode(StreamerChange(kind, data)), store=False
        )
