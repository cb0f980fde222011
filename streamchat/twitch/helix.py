"""Helix response shapes (``GET /helix/users``, ``GET /helix/streams``) and their mapping
onto streamer rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["HelixStream", "HelixUser", "streamer_rows"]


class HelixUser(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    login: str
    display_name: str
    type: str = ""
    broadcaster_type: str = ""
    description: str = ""
    profile_image_url: str = ""
    offline_image_url: str = ""
    created_at: datetime | None = None


class HelixStream(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    user_id: str
    user_login: str
    user_name: str
    game_id: str = ""
    game_name: str = ""
    type: str = "live"
    title: str = ""
    viewer_count: int = 0
    started_at: datetime | None = None
    language: str = ""


def streamer_rows(users: list[HelixUser], streams: list[HelixStream]) -> list[dict[str, Any]]:
    """One row per user, live when a stream of theirs is listed (Helix lists live ones only)."""
    live = {stream.user_id: stream for stream in streams if stream.type == "live"}
    rows = []
    for user in users:
        stream = live.get(user.id)
        row: dict[str, Any] = {
            "id": user.id,
            "login": user.login.lower(),
            "display_name": user.display_name,
            "description": user.description,
            "profile_image_url": user.profile_image_url,
            "offline_image_url": user.offline_image_url,
            "broadcaster_type": user.broadcaster_type,
            "live": stream is not None,
            "viewer_count": stream.viewer_count if stream else 0,
            "started_at": stream.started_at if stream else None,
        }
        if stream is not None:
            # Title and game outlive the stream on Twitch; keep the last known ones offline.
            row.update(
                title=stream.title,
                game_id=stream.game_id,
                game_name=stream.game_name,
                language=stream.language,
            )
        rows.append(row)
    return rows
