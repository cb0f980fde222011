"""streamchat: a real-time chat server for streamer communities."""

from __future__ import annotations

__version__ = "0.1.0"
