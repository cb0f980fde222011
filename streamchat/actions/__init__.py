"""The one write path: every action with side effects, as one function each.

HTTP routes and the WebSocket layer call these; they translate their protocol
to a call and the result back, and nothing else. An action takes the app's
:class:`~streamchat.services.Services`, raises :mod:`streamchat.errors`, and does
everything the action implies (logging out also closes that session's sockets,
on every process).
"""

from __future__ import annotations

from streamchat.actions.broadcasts import announce, broadcast
from streamchat.actions.moderation import moderate
from streamchat.actions.sessions import log_in, log_in_with_twitch, log_out
from streamchat.actions.streamers import add_streamer, remove_streamer
from streamchat.actions.users import clear_favorite, register, set_favorite

__all__ = [
    "add_streamer",
    "announce",
    "broadcast",
    "clear_favorite",
    "log_in",
    "log_in_with_twitch",
    "log_out",
    "moderate",
    "register",
    "remove_streamer",
    "set_favorite",
]
