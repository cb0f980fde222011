"""The envelope a message travels in between processes.

Binary and versioned: a fixed header, then the channel and epoch as UTF-8, then the
payload. Encoded once per publish and decoded once per received message, whatever the
number of local subscribers. A *reference* envelope omits the payload: the receiver
fetches the message from the store (used when a broker cannot carry the payload, such
as PostgreSQL NOTIFY and its 8000-byte limit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._message import Message

__all__ = ["Envelope", "WireError", "decode", "encode", "reference_size"]

_VERSION = 1
_FLAG_REFERENCE = 0x01
# version, flags, seq, time, len(channel), len(epoch)
_HEADER = struct.Struct("!BBQdHH")


class WireError(ValueError):
    """The bytes are not an envelope this version understands."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope; ``payload`` is None for a reference."""

    channel: str
    seq: int
    time: float
    epoch: str
    payload: bytes | None

    def message(self) -> Message:
        assert self.payload is not None
        return Message(self.channel, self.seq, self.payload, self.time, self.epoch)


def encode(message: Message, *, reference: bool = False) -> bytes:
    channel = message.channel.encode()
    epoch = message.epoch.encode()
    flags = _FLAG_REFERENCE if reference else 0
    header = _HEADER.pack(_VERSION, flags, message.seq, message.time, len(channel), len(epoch))
    body = b"" if reference else message.payload
    return b"".join((header, channel, epoch, body))


def reference_size(message: Message) -> int:
    """The size of the reference envelope of ``message``."""
    return _HEADER.size + len(message.channel.encode()) + len(message.epoch.encode())


def decode(data: bytes) -> Envelope:
    """Decode an envelope; raise WireError for anything malformed."""
    size = _HEADER.size
    if len(data) < size:
        raise WireError(f"envelope too short ({len(data)} bytes)")
    try:
        version, flags, seq, time, channel_len, epoch_len = _HEADER.unpack_from(data)
    except struct.error as exc:  # pragma: no cover - length checked above
        raise WireError(str(exc)) from exc
    if version != _VERSION:
        raise WireError(f"unknown envelope version {version}")
    end = size + channel_len + epoch_len
    if len(data) < end:
        raise WireError("envelope truncated")
    try:
        channel = data[size : size + channel_len].decode()
        epoch = data[size + channel_len : end].decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"envelope has invalid UTF-8: {exc}") from exc
    if not channel:
        raise WireError("envelope without channel")
    if seq == 0 and (epoch or flags & _FLAG_REFERENCE):
        raise WireError("ephemeral envelope with an epoch or without payload")
    if flags & _FLAG_REFERENCE:
        if len(data) != end:
            raise WireError("reference envelope with a payload")
        return Envelope(channel, seq, time, epoch, None)
    return Envelope(channel, seq, time, epoch, bytes(data[end:]))
