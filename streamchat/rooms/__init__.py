"""Chat rooms: validate → store → publish, and the per-process fan-out to connections."""

from __future__ import annotations

from streamchat.rooms.service import RoomService

__all__ = ["RoomService"]
