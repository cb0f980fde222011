"""The envelope between processes."""

from __future__ import annotations

import pytest

from streamchat.pubsub import Message
from streamchat.pubsub._wire import WireError, decode, encode


def test_round_trip() -> None:
    message = Message("room:é", 42, b"\x00payload\xff", 1700000000.25, "abc123")
    envelope = decode(encode(message))
    assert envelope.message() == message


def test_reference_omits_the_payload() -> None:
    message = Message("room", 7, b"x" * 10000, 1.5, "ep")
    data = encode(message, reference=True)
    assert len(data) < 100
    envelope = decode(data)
    assert envelope.payload is None
    assert (envelope.channel, envelope.seq, envelope.epoch) == ("room", 7, "ep")


def test_ephemeral_round_trip() -> None:
    message = Message("room", 0, b"typing", 2.0, "")
    assert decode(encode(message)).message() == message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00",
        b"\x02" + b"\x00" * 30,  # unknown version
        encode(Message("room", 1, b"p", 1.0, "e"))[:22],  # truncated
        b"\x01\x00" + b"\x00" * 16 + b"\x00\x02\x00\x00\xff\xfe",  # invalid UTF-8
        b"\x01\x00" + b"\x00" * 16 + b"\x00\x00\x00\x00payload",  # no channel
    ],
)
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)
