"""uvicorn's HTTP protocol, with a deadline on each request: slow clients are cut off.

uvicorn closes a keep-alive connection that stays idle between requests, but
not one that never finishes its request: a client that sends its headers a
byte at a time, or connects and says nothing, holds a connection for ever.
Here each request (headers and body) must arrive within ``request_timeout``
seconds of its first byte, or of the connection's opening; otherwise the
connection is closed. WebSockets leave this protocol at the upgrade.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["StreamchatHttpProtocol", "with_request_timeout"]


class StreamchatHttpProtocol(HttpToolsProtocol):
    request_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # the first request must come, and be whole, in time

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def with_request_timeout(seconds: float) -> type[StreamchatHttpProtocol]:
    """The protocol class to give uvicorn (``http=``), with this deadline per request."""
    return type("StreamchatHttpProtocol", (StreamchatHttpProtocol,), {"request_timeout": seconds})
