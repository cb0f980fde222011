"""The room protocol's frames: decoding client requests, encoding server frames."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from streamchat.errors import (
    InvalidFrame,
    MalformedFrame,
    NotAuthenticated,
    RateLimited,
    StreamchatError,
    UnknownRoom,
    UnknownType,
)
from streamchat.protocol import (
    MAX_TEXT_LENGTH,
    Ack,
    ChatMessage,
    ErrorFrame,
    EventFrame,
    History,
    HistoryReply,
    Join,
    Leave,
    Ping,
    Pong,
    Presence,
    PresenceReply,
    Publish,
    Request,
    RequestError,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    UserRef,
    decode_requests,
    encode,
    error_frame,
    message_frame,
)


def _one(data: str | bytes) -> Request | RequestError:
    decoded = decode_requests(data)
    assert len(decoded) == 1, decoded
    return decoded[0]


def _error(data: str | bytes) -> RequestError:
    decoded = _one(data)
    assert isinstance(decoded, RequestError), decoded
    return decoded


def _json(data: bytes) -> Any:
    return json.loads(data)


# -- decode_requests: each request type ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type":"subscribe","id":1,"room":"sable"}', Subscribe(id=1, room="sable")),
        (
            '{"type":"subscribe","id":"s","room":"sable","since":41,"epoch":"e1"}',
            Subscribe(id="s", room="sable", since=41, epoch="e1"),
        ),
        ('{"type":"subscribe","room":"sable","since":0}', Subscribe(room="sable", since=0)),
        ('{"type":"unsubscribe","id":2,"room":"sable"}', Unsubscribe(id=2, room="sable")),
        (
            '{"type":"publish","id":3,"room":"sable","text":"hi"}',
            Publish(id=3, room="sable", text="hi"),
        ),
        (
            '{"type":"publish","id":3,"room":"sable","text":"hi","nonce":"n-1"}',
            Publish(id=3, room="sable", text="hi", nonce="n-1"),
        ),
        (
            '{"type":"history","id":4,"room":"sable"}',
            History(id=4, room="sable", before=None, limit=50),
        ),
        (
            '{"type":"history","id":4,"room":"sable","before":120,"limit":10}',
            History(id=4, room="sable", before=120, limit=10),
        ),
        ('{"type":"presence","id":5,"room":"sable"}', Presence(id=5, room="sable")),
        ('{"type":"ping","id":6}', Ping(id=6)),
        ('{"type":"ping"}', Ping()),
    ],
)
def test_each_request_type_decodes(line: str, expected: Request) -> None:
    assert _one(line) == expected
    assert _one(line.encode()) == expected


def test_id_may_be_int_or_string() -> None:
    assert _one('{"type":"ping","id":0}') == Ping(id=0)
    assert _one('{"type":"ping","id":-7}') == Ping(id=-7)
    assert _one('{"type":"ping","id":"abc"}') == Ping(id="abc")
    assert _one('{"type":"ping","id":null}') == Ping(id=None)


def test_optional_fields_may_be_null() -> None:
    # What a client gets by encoding the request structs with their defaults.
    assert _one('{"type":"subscribe","id":1,"room":"r","since":null,"epoch":null}') == Subscribe(
        id=1, room="r"
    )
    assert _one('{"type":"publish","room":"r","text":"t","nonce":null}') == Publish(
        room="r", text="t"
    )
    assert _one('{"type":"history","room":"r","before":null}') == History(room="r")


@pytest.mark.parametrize(
    "request_",
    [
        Subscribe(id=1, room="r", since=5, epoch="e"),
        Subscribe(id=1, room="r"),
        Unsubscribe(id="u", room="r"),
        Publish(id=2, room="r", text="héllo ✓", nonce="n"),
        History(id=3, room="r", before=9, limit=100),
        Presence(id=4, room="r"),
        Ping(id=5),
    ],
)
def test_encoded_requests_decode_to_themselves(request_: Request) -> None:
    assert decode_requests(encode(request_)) == [request_]


def test_unknown_fields_are_ignored() -> None:
    assert _one('{"type":"ping","id":1,"future":{"x":[1]}}') == Ping(id=1)


def test_field_order_does_not_matter() -> None:
    assert _one('{"room":"r","id":9,"type":"presence"}') == Presence(id=9, room="r")


# -- decode_requests: framing ----------------------------------------------------------


def test_batched_lines_decode_in_order() -> None:
    frame = "\n".join(
        [
            '{"type":"subscribe","id":1,"room":"a"}',
            '{"type":"publish","id":2,"room":"a","text":"x"}',
            '{"type":"ping","id":3}',
        ]
    )
    assert decode_requests(frame) == [
        Subscribe(id=1, room="a"),
        Publish(id=2, room="a", text="x"),
        Ping(id=3),
    ]


def test_blank_lines_are_skipped() -> None:
    frame = '\n\n{"type":"ping","id":1}\n   \n\t\n{"type":"ping","id":2}\n'
    assert decode_requests(frame) == [Ping(id=1), Ping(id=2)]
    assert decode_requests("") == []
    assert decode_requests(b"\n \n") == []


def test_crlf_line_endings_are_tolerated() -> None:
    assert decode_requests('{"type":"ping","id":1}\r\n{"type":"ping","id":2}\r\n') == [
        Ping(id=1),
        Ping(id=2),
    ]


def test_a_bad_line_does_not_spoil_its_neighbours() -> None:
    decoded = decode_requests('{"type":"ping","id":1}\n{oops\n{"type":"ping","id":3}')
    assert decoded[0] == Ping(id=1)
    assert isinstance(decoded[1], RequestError)
    assert isinstance(decoded[1].error, MalformedFrame)
    assert decoded[2] == Ping(id=3)


def test_two_objects_on_one_line_are_malformed() -> None:
    error = _error('{"type":"ping"} {"type":"ping"}')
    assert isinstance(error.error, MalformedFrame)


# -- decode_requests: errors -----------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["{oops", '{"type":"ping",', "nope", '{"type":"ping"}}', b"\xff\xfe{}"]
)
def test_malformed_json(line: str | bytes) -> None:
    error = _error(line)
    assert error.id is None
    assert isinstance(error.error, MalformedFrame)
    assert error.error.code == "malformed_json"


@pytest.mark.parametrize("line", ["[1, 2]", '"ping"', "42", "null", "true"])
def test_a_line_that_is_not_an_object(line: str) -> None:
    error = _error(line)
    assert error.id is None
    assert isinstance(error.error, InvalidFrame)
    assert error.error.code == "invalid_frame"


def test_missing_type_echoes_the_id() -> None:
    error = _error('{"id":3,"room":"r"}')
    assert error.id == 3
    assert isinstance(error.error, InvalidFrame)
    assert "type" in error.error.message


@pytest.mark.parametrize("kind", ["shout", "ack", "message", "subscribed", "SUBSCRIBE"])
def test_unknown_type_echoes_the_id(kind: str) -> None:
    error = _error(json.dumps({"type": kind, "id": "req-7", "room": "r"}))
    assert error.id == "req-7"
    assert isinstance(error.error, UnknownType)
    assert error.error.code == "unknown_type"
    assert kind in error.error.message


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"type":"subscribe","id":1}', "room"),
        ('{"type":"unsubscribe","id":1}', "room"),
        ('{"type":"publish","id":1,"text":"hi"}', "room"),
        ('{"type":"publish","id":1,"room":"r"}', "text"),
        ('{"type":"history","id":1}', "room"),
        ('{"type":"presence","id":1}', "room"),
    ],
)
def test_missing_field_is_named_and_echoes_the_id(line: str, field: str) -> None:
    error = _error(line)
    assert error.id == 1
    assert isinstance(error.error, InvalidFrame)
    assert error.error.message == f"missing field {field!r}"


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"subscribe","id":1,"room":5}',
        '{"type":"subscribe","id":1,"room":"r","since":"10"}',
        '{"type":"subscribe","id":1,"room":"r","since":1.5}',
        '{"type":"subscribe","id":1,"room":"r","epoch":3}',
        '{"type":"publish","id":1,"room":"r","text":["hi"]}',
        '{"type":"publish","id":1,"room":"r","text":"hi","nonce":7}',
        '{"type":"history","id":1,"room":"r","limit":"50"}',
        '{"type":"history","id":1,"room":"r","before":true}',
        '{"type":"presence","id":1,"room":null}',
    ],
)
def test_wrong_types_are_invalid_frames_that_echo_the_id(line: str) -> None:
    error = _error(line)
    assert error.id == 1
    assert isinstance(error.error, InvalidFrame)


@pytest.mark.parametrize("bad_id", ["true", "false", "1.5", "[1]", '{"n":1}'])
def test_an_id_that_is_neither_int_nor_string_is_rejected_and_not_echoed(bad_id: str) -> None:
    error = _error(f'{{"type":"ping","id":{bad_id}}}')
    assert error.id is None
    assert isinstance(error.error, InvalidFrame)
    assert "id" in error.error.message


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"subscribe","id":1,"room":"r","since":-1}',
        '{"type":"history","id":1,"room":"r","before":-1}',
        '{"type":"history","id":1,"room":"r","limit":0}',
        '{"type":"history","id":1,"room":"r","limit":-5}',
        '{"type":"subscribe","id":1,"room":""}',
        '{"type":"subscribe","id":1,"room":"' + "r" * 65 + '"}',
        '{"type":"publish","id":1,"room":"r","text":"hi","nonce":""}',
        '{"type":"publish","id":1,"room":"r","text":"hi","nonce":"' + "n" * 65 + '"}',
        '{"type":"publish","id":1,"room":"r","text":"' + "t" * (4 * MAX_TEXT_LENGTH + 1) + '"}',
    ],
)
def test_values_out_of_bounds_are_invalid_frames(line: str) -> None:
    error = _error(line)
    assert isinstance(error.error, InvalidFrame)


def test_values_at_the_bounds_are_accepted() -> None:
    assert _one('{"type":"subscribe","room":"' + "r" * 64 + '","since":0}') == Subscribe(
        room="r" * 64, since=0
    )
    nonce = "n" * 64
    assert _one(f'{{"type":"publish","room":"r","text":"hi","nonce":"{nonce}"}}') == Publish(
        room="r", text="hi", nonce=nonce
    )
    assert _one('{"type":"history","room":"r","limit":1,"before":0}') == History(
        room="r", limit=1, before=0
    )


def test_history_limit_above_the_maximum_is_left_for_the_server_to_clamp() -> None:
    assert _one('{"type":"history","room":"r","limit":1000}') == History(room="r", limit=1000)


def test_text_checks_are_left_to_the_room_service() -> None:
    # Empty, over-long (up to the decoder's cap) or odd text decodes; the room
    # service answers invalid_text, which the client then sees with its id.
    long_text = "t" * (MAX_TEXT_LENGTH + 1)
    assert _one(f'{{"type":"publish","room":"r","text":"{long_text}"}}') == Publish(
        room="r", text=long_text
    )
    assert _one('{"type":"publish","room":"r","text":""}') == Publish(room="r", text="")


# -- error_frame -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MalformedFrame("not valid JSON"), "malformed_json"),
        (UnknownType("unknown type 'x'"), "unknown_type"),
        (InvalidFrame("missing field 'room'"), "invalid_frame"),
        (UnknownRoom("no room 'x'"), "unknown_room"),
        (NotAuthenticated("log in to chat"), "not_authenticated"),
        (RateLimited("slow down"), "rate_limited"),
    ],
)
def test_error_frame_carries_code_reason_and_id(error: StreamchatError, code: str) -> None:
    assert _json(error_frame(7, error)) == {
        "type": "error",
        "id": 7,
        "code": code,
        "reason": error.message,
    }
    assert _json(error_frame("req", error))["id"] == "req"


def test_error_frame_without_id_omits_it() -> None:
    assert _json(error_frame(None, MalformedFrame("not valid JSON"))) == {
        "type": "error",
        "code": "malformed_json",
        "reason": "not valid JSON",
    }


def test_error_frame_for_a_decode_failure_echoes_its_id() -> None:
    failure = _error('{"type":"nope","id":12}')
    assert _json(error_frame(failure.id, failure.error)) == {
        "type": "error",
        "id": 12,
        "code": "unknown_type",
        "reason": "unknown type 'nope'",
    }


def test_error_frame_decodes_as_error_frame() -> None:
    frame = error_frame(3, UnknownRoom('no room "x\\y"'))
    assert msgspec.json.decode(frame, type=ErrorFrame) == ErrorFrame(
        id=3, code="unknown_room", reason='no room "x\\y"'
    )


# -- message_frame -----------------------------------------------------------------------


class _FullMessage(msgspec.Struct, tag="message", tag_field="type"):
    """The documented ``message`` object, encoded the slow way."""

    room: str
    seq: int
    message_id: str
    user: UserRef
    text: str
    ts: int


_USERS = [
    UserRef("1001", "viewer", "Viewer"),
    UserRef("1002", None, None),
    UserRef("1003", "q", 'Quote "me" \\ back'),
]


@pytest.mark.parametrize("user", _USERS)
@pytest.mark.parametrize(
    ("room", "seq", "text"),
    [
        ("sablesignal", 1, "hello"),
        ("r", 0, ""),
        ("room_2", 2**53, 'a "quoted" \\ back\\slash {not: json}'),
        ("héllo", 42, "ünïcödé ✓ 🎉 \u2028 end"),
    ],
)
def test_message_frame_equals_a_full_encode(user: UserRef, room: str, seq: int, text: str) -> None:
    body = encode(ChatMessage("m-1", user, text, 1_700_000_000_123))
    frame = message_frame(room, seq, body)
    assert frame == encode(_FullMessage(room, seq, "m-1", user, text, 1_700_000_000_123))
    assert _json(frame) == {
        "type": "message",
        "room": room,
        "seq": seq,
        "message_id": "m-1",
        "user": {"id": user.id, "login": user.login, "display_name": user.display_name},
        "text": text,
        "ts": 1_700_000_000_123,
    }


def test_message_frames_batch_into_lines() -> None:
    body = encode(ChatMessage("m", _USERS[0], "line one\nline two", 1))
    frame = b"\n".join(message_frame("r", seq, body) for seq in (1, 2, 3))
    # A newline inside text is escaped, so splitting the frame on \n is safe.
    assert [_json(line)["seq"] for line in frame.split(b"\n")] == [1, 2, 3]


# -- encode: server frames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Subscribed(room="r", seq=0, epoch="e", recovered=False),
            {"type": "subscribed", "room": "r", "seq": 0, "epoch": "e", "recovered": False},
        ),
        (Unsubscribed(room="r"), {"type": "unsubscribed", "room": "r"}),
        (
            Ack(room="r", seq=3, message_id="m"),
            {"type": "ack", "room": "r", "seq": 3, "message_id": "m"},
        ),
        (
            HistoryReply(room="r", messages=[]),
            {"type": "history", "room": "r", "messages": []},
        ),
        (
            PresenceReply(room="r", count=0, users=[]),
            {"type": "presence", "room": "r", "count": 0, "users": []},
        ),
        (Pong(), {"type": "pong"}),
        (ErrorFrame(code="c", reason="why"), {"type": "error", "code": "c", "reason": "why"}),
    ],
)
def test_replies_without_id_omit_it(reply: msgspec.Struct, expected: dict[str, Any]) -> None:
    assert _json(encode(reply)) == expected


@pytest.mark.parametrize("request_id", [0, 1, -1, "", "abc"])
def test_replies_with_id_echo_it_whatever_its_value(request_id: int | str) -> None:
    assert _json(encode(Pong(id=request_id))) == {"type": "pong", "id": request_id}
    assert _json(encode(Unsubscribed(id=request_id, room="r")))["id"] == request_id


def test_subscribed_always_says_whether_it_recovered() -> None:
    true = _json(encode(Subscribed(id=1, room="r", seq=9, epoch="e", recovered=True)))
    assert true == {
        "type": "subscribed",
        "id": 1,
        "room": "r",
        "seq": 9,
        "epoch": "e",
        "recovered": True,
    }


def test_history_reply_embeds_message_frames_verbatim() -> None:
    body = encode(ChatMessage("m", _USERS[0], "hi", 5))
    frames = [message_frame("r", seq, body) for seq in (4, 5)]
    reply = encode(HistoryReply(id=4, room="r", messages=[msgspec.Raw(f) for f in frames]))
    assert _json(reply) == {
        "type": "history",
        "id": 4,
        "room": "r",
        "messages": [_json(f) for f in frames],
    }


def test_presence_reply_lists_users_with_nulls() -> None:
    reply = PresenceReply(id=5, room="r", count=2, users=_USERS[:2])
    assert _json(encode(reply)) == {
        "type": "presence",
        "id": 5,
        "room": "r",
        "count": 2,
        "users": [
            {"id": "1001", "login": "viewer", "display_name": "Viewer"},
            {"id": "1002", "login": None, "display_name": None},
        ],
    }


def test_join_leave_and_event_frames() -> None:
    user = _USERS[1]
    assert _json(encode(Join("r", user))) == {
        "type": "join",
        "room": "r",
        "user": {"id": "1002", "login": None, "display_name": None},
    }
    assert _json(encode(Leave("r", user)))["type"] == "leave"
    assert _json(encode(EventFrame("r", "stream.online", {"title": "hi", "n": 1}))) == {
        "type": "event",
        "room": "r",
        "kind": "stream.online",
        "data": {"title": "hi", "n": 1},
    }


def test_server_frames_are_single_lines() -> None:
    # Frames are batched with \n between them: no encoding may contain a raw newline.
    frames = [
        encode(ErrorFrame(id=1, code="c", reason="two\nlines")),
        encode(EventFrame("r", "k", {"text": "a\nb"})),
        encode(PresenceReply(room="r", count=1, users=[UserRef("1", "l", "new\nline")])),
    ]
    assert all(b"\n" not in frame for frame in frames)
