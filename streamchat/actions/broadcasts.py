"""What operators send: an event to one room, a broadcast to every room and actor."""

from __future__ import annotations

from typing import Any

from streamchat.services import Services

__all__ = ["announce", "broadcast"]


async def announce(services: Services, room: str, kind: str, data: dict[str, Any]) -> None:
    """An ``event`` to everyone in ``room`` (by login or ID) now, on every process."""
    await services.rooms.announce(room, kind, data)


async def broadcast(services: Services, text: str) -> None:
    """An ``event`` of kind ``broadcast`` to every room on every process, and the
    broadcast command to every actor."""
    await services.rooms.broadcast("broadcast", {"text": text})
    await services.cluster.broadcast(text)
