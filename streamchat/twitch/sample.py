"""The bundled sample data set: Helix-shaped users and streams for a first start."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from streamchat.twitch.helix import HelixStream, HelixUser, streamer_rows

__all__ = ["sample_streamer_rows"]


def sample_streamer_rows() -> list[dict[str, Any]]:
    raw = json.loads(
        resources.files("streamchat.twitch").joinpath("data/helix_sample.json").read_text()
    )
    users = [HelixUser.model_validate(item) for item in raw["users"]["data"]]
    streams = [HelixStream.model_validate(item) for item in raw["streams"]["data"]]
    return streamer_rows(users, streams)
