"""Flow control of one client's WebSocket: what waits to be written, and when it goes.

Output takes two roads to the socket. Room traffic arrives as batches that
every member of the room shares: an outbox with nothing else waiting writes the
batch's one ready-made frame straight to its socket, so a room fans out at the
cost of one socket write per member. Everything else (replies, errors, a
replay, or room traffic while the socket is backed up) waits in the outbox's
list, written as one frame of ``\\n``-separated objects at the next turn of the
event loop.

Both roads are bounded: when what waits for a client (in the outbox and in the
socket's buffer) passes ``max_queued_bytes`` the client is too slow, and it is
disconnected with close code 4008 rather than cost unbounded memory or slow
anyone else.

The outbox also holds the connection's lifecycle (:class:`ConnectionState`):

* ``OPEN``: frames are written.
* ``OPEN → CLOSING``: the server closes it (:meth:`Outbox.close`: too slow, too
  many errors, the session ended). What waits is dropped, the close frame goes
  out, and frames handed to it afterwards are dropped too.
* ``OPEN`` or ``CLOSING`` ``→ CLOSED``: the connection's reader has ended (the
  client left, or the close completed) and it has left its rooms
  (:meth:`Outbox.finish`).
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING

from streamchat.ws.transport import DirectWire, text_frame

if TYPE_CHECKING:
    from streamchat.rooms.feeds import Batch

__all__ = ["CloseCode", "ConnectionState", "Outbox"]


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    POLICY = 1008
    SESSION_ENDED = 4001
    FORBIDDEN_ORIGIN = 4003
    TOO_SLOW = 4008


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# Module globals: the hot path compares against them for every member of a batch.
_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED


class Outbox:
    """Frames on their way to one client: the room ``Member`` of its connection."""

    # Thousands sit idle at once: no per-instance __dict__.
    __slots__ = (
        "_drained",
        "_flush_scheduled",
        "_frames",
        "_max_frame_bytes",
        "_max_queued_bytes",
        "_queued",
        "_wire",
        "state",
    )

    def __init__(self, wire: DirectWire, *, max_queued_bytes: int, max_frame_bytes: int) -> None:
        self.state = _OPEN
        self._wire = wire
        self._max_queued_bytes = max_queued_bytes
        self._max_frame_bytes = max_frame_bytes
        self._frames: list[bytes] = []
        self._queued = 0
        self._flush_scheduled = False
        self._drained: asyncio.Event | None = None
        wire.on_writable(self._schedule_flush)

    # -- the Member side: frames from rooms and replies ----------------------------------

    def deliver(self, frame: bytes) -> None:
        if self.state is not _OPEN:
            return
        self._frames.append(frame)
        self._queued += len(frame)
        if self._queued + self._wire.buffered > self._max_queued_bytes:
            self.overflow()
            return
        self._schedule_flush()

    def deliver_batch(self, batch: Batch) -> None:
        if self.state is not _OPEN:
            return
        wire = self._wire
        if not self._frames:
            framed = batch.framed
            if framed is None:
                framed = batch.framed = text_frame(batch.payload)
            buffered = wire.offer(framed)
            if buffered > self._max_queued_bytes:
                self.overflow()
            if buffered >= 0:
                return
        # Behind other output, or the socket is backed up: queue, in order.
        self._frames.extend(batch.frames)
        self._queued += batch.size
        if self._queued + wire.buffered > self._max_queued_bytes:
            self.overflow()
            return
        self._schedule_flush()

    def overflow(self) -> None:
        self.close(CloseCode.TOO_SLOW, "too slow: the outgoing queue overflowed")

    async def drained(self) -> None:
        """Return once most of what waits has been written (or the connection closes)."""
        while self.state is _OPEN and not self._caught_up:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """``OPEN → CLOSING``: close the connection now; frames still waiting are dropped."""
        if self.state is not _OPEN:
            return
        self.state = _CLOSING
        self._drop()
        # The close frame goes after what the socket already holds; a peer that
        # never reads it is cut off after a timeout. The reader then sees the end.
        self._wire.abort(code, reason)

    def finish(self) -> None:
        """``→ CLOSED``: the reader has ended; nothing is written any more."""
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self._drop()
        self._wire.on_writable(None)

    def _drop(self) -> None:
        self._frames.clear()
        self._queued = 0
        if self._drained is not None:
            self._drained.set()

    # -- writing -------------------------------------------------------------------------

    @property
    def _caught_up(self) -> bool:
        # The socket's own flow control says when its buffer is low again
        # (resume_writing); between its marks there is no signal to wait for.
        return self._queued <= self._max_queued_bytes // 4 and self._wire.writable

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what waits as few frames, if the socket takes them."""
        self._flush_scheduled = False
        if self.state is not _OPEN:
            return
        wire = self._wire
        # A backed-up socket calls _schedule_flush again when it drains.
        if self._frames and wire.writable:
            frames, self._frames = self._frames, []
            self._queued = 0
            max_frame = self._max_frame_bytes
            start, size = 0, 0
            for index, frame in enumerate(frames):
                if size and size + len(frame) > max_frame:
                    wire.write(text_frame(b"\n".join(frames[start:index])))
                    start, size = index, 0
                size += len(frame) + 1
            wire.write(text_frame(b"\n".join(frames[start:])))
            if wire.buffered > self._max_queued_bytes:
                self.overflow()
                return
        if self._drained is not None and self._caught_up:
            self._drained.set()
