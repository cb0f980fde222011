"""Which browser pages may act with the user's cookie: the server's own, and those allowed.

Checked for state-changing HTTP requests (``http/origin.py``) and for the WebSocket
handshake (``ws/endpoint.py``).
"""

from __future__ import annotations

__all__ = ["is_trusted_origin"]

# A WebSocket handshake is an HTTP request: its page's origin is http(s).
_HTTP_SCHEME = {"ws": "http", "wss": "https"}


def is_trusted_origin(
    origin: str, *, scheme: str, host: str | None, allowed: frozenset[str] | set[str]
) -> bool:
    """Whether a browser page at ``origin`` may act on this server with the user's cookie."""
    origin = origin.lower().rstrip("/")
    if origin in allowed:
        return True
    own = f"{_HTTP_SCHEME.get(scheme, scheme)}://{host}".lower()
    return host is not None and origin == own
