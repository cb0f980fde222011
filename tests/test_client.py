"""streamchat.client: the Python client, against a real server.

What a correct server never sends (a line that is not JSON, a reply of the wrong type)
comes from a tiny WebSocket server in the test that sends exactly those bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from streamchat.client import (
    SESSION_COOKIE,
    ChatClient,
    ChatError,
    Event,
    EventsDropped,
    InvalidReply,
    Message,
    _http_base,
    login,
    logout,
    websocket_url,
)
from streamchat.config import AuthMode, Settings
from streamchat.protocol import Ack, ErrorFrame, EventFrame, Pong, PresenceReply, UserRef
from tests.helpers import messages, next_message, no_more_messages
from tests.ws.conftest import OTHER_ROOM, ROOM, LiveServer, live_server

ALICE = UserRef("1001", "alice", "alice")

ServerWith = Callable[..., AbstractAsyncContextManager[LiveServer]]


@pytest.fixture
def server_with(tmp_path: Path) -> ServerWith:
    """Start a real server on loopback with these settings overridden."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return live_server(
            Settings(
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                run_singletons=False,
                **overrides,
            )
        )

    return start


@pytest.fixture
async def server(server_with: ServerWith) -> AsyncIterator[LiveServer]:
    async with server_with() as server:
        yield server


# -- a scripted server: what a correct server never sends --------------------------------

Script = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    """A WebSocket server on loopback that runs ``script`` for each connection; its URL."""
    async with serve(script, "127.0.0.1", 0) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        yield f"ws://{host}:{port}/ws"


def answering(reply: Callable[[dict[str, Any]], str | None]) -> Script:
    """A script that sends ``reply(request)`` for every request (nothing for None)."""

    async def script(ws: ServerConnection) -> None:
        async for data in ws:
            for line in str(data).split("\n"):
                answer = reply(json.loads(line))
                if answer is not None:
                    await ws.send(answer)

    return script


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws"),
        ("https://chat.example", "wss://chat.example/ws"),
        ("HTTPS://chat.example/", "wss://chat.example/ws"),
        # Behind a proxy under a path: the path is the base, with or without its slash.
        ("https://example.com/chat", "wss://example.com/chat/ws"),
        ("https://example.com/chat/", "wss://example.com/chat/ws"),
        ("http://example.com/ws", "ws://example.com/ws/ws"),
        # A ws(s):// URL with a path is the endpoint itself.
        ("ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
        ("wss://example.com/chat/socket", "wss://example.com/chat/socket"),
        ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        ("wss://example.com/", "wss://example.com/ws"),
        # The query is kept, the fragment (never sent) dropped.
        ("https://example.com/?token=x#top", "wss://example.com/ws?token=x"),
    ],
)
def test_websocket_url(url: str, endpoint: str) -> None:
    assert websocket_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://example.com/chat//", "https://example.com/chat"),
        ("ws://127.0.0.1:8000/ws", "http://127.0.0.1:8000"),
        ("wss://example.com/chat/ws", "https://example.com/chat"),
        ("wss://example.com/chat/ws/", "https://example.com/chat"),
        ("WSS://example.com", "https://example.com"),
        # An http(s) URL is a base already, even one ending in /ws.
        ("https://example.com/ws", "https://example.com/ws"),
        ("https://example.com/app?x=1#y", "https://example.com/app"),
    ],
)
def test_http_base(url: str, base: str) -> None:
    assert _http_base(url) == base


@pytest.mark.parametrize(
    "url", ["ftp://example.com", "example.com:8000", "http://", "/ws", "", "ws:///ws"]
)
def test_urls_that_are_neither_http_nor_ws_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        websocket_url(url)
    with pytest.raises(ValueError, match="not an http"):
        _http_base(url)


# -- opening and closing -----------------------------------------------------------------


async def test_connect_opens_and_the_block_closes(server: LiveServer) -> None:
    async with ChatClient.connect(server.url) as chat:
        assert not chat.closed
        assert chat.close_code is None
        assert chat.close_reason is None
        assert await chat.ping() == Pong(id=1)
        assert await chat.ping() == Pong(id=2)
    assert chat.closed
    assert chat.close_code == 1000
    # Every later request, and the end of the events, says the connection ended normally.
    with pytest.raises(ConnectionClosedOK):
        await chat.ping()
    with pytest.raises(ConnectionClosedOK):
        await chat.send_raw('{"type":"ping"}')
    with pytest.raises(ConnectionClosedOK):
        await chat.next_event(1)
    assert [event async for event in chat.events()] == []
    await chat.close()  # idempotent
    assert chat.close_code == 1000


@pytest.mark.parametrize(
    "as_given",
    [
        lambda url: url + "/",
        lambda url: url.replace("http://", "ws://") + "/ws",
        lambda url: url.replace("http://", "ws://"),
    ],
    ids=["trailing-slash", "ws-endpoint", "ws-base"],
)
async def test_open_takes_the_base_url_or_the_endpoint(
    server: LiveServer, as_given: Callable[[str], str]
) -> None:
    chat = await ChatClient.open(as_given(server.url))
    try:
        assert await chat.ping() == Pong(id=1)
        assert len(server.services.connections) == 1
    finally:
        await chat.close()
    assert chat.closed


async def test_close_with_a_code_and_reason(server: LiveServer) -> None:
    chat = await ChatClient.open(server.url)
    await chat.close(4000, "done here")
    assert (chat.close_code, chat.close_reason) == (4000, "done here")
    with pytest.raises(ConnectionClosed):
        await chat.ping()


async def test_a_session_ended_by_logout_closes_with_4001(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        await chat.subscribe(ROOM)
        await logout(server.url, session)
        await chat.wait_closed()
        assert chat.closed
        assert (chat.close_code, chat.close_reason) == (4001, "session ended")
        with pytest.raises(ConnectionClosedError) as ended:
            await chat.publish(ROOM, "too late")
        assert ended.value.rcvd is not None
        assert ended.value.rcvd.code == 4001


async def test_max_events_must_be_positive(server: LiveServer) -> None:
    with pytest.raises(ValueError, match="max_events"):
        await ChatClient.open(server.url, max_events=0)


async def test_refusing_max_events_leaves_no_connection_open(server: LiveServer) -> None:
    with pytest.raises(ValueError, match="max_events"):
        await ChatClient.open(server.url, max_events=0)
    for _ in range(40):  # the server sees a close within a round trip; give it 2 s
        if len(server.services.connections) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(server.services.connections) == 0


# -- requests ----------------------------------------------------------------------------


async def test_subscribe_publish_history_presence_unsubscribe(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        subscribed = await reader.subscribe(ROOM)
        assert (subscribed.room, subscribed.seq, subscribed.recovered) == (ROOM, 0, False)
        assert subscribed.epoch

        ack = await writer.publish(ROOM, "hello")
        assert isinstance(ack, Ack)
        assert (ack.room, ack.seq) == (ROOM, 1)
        message = await next_message(reader)
        assert message == Message(
            room=ROOM, seq=1, message_id=ack.message_id, user=ALICE, text="hello", ts=message.ts
        )
        assert await reader.history(ROOM) == [message]

        # Presence counts logged-in subscribers: the anonymous reader is not one.
        presence = await reader.presence(ROOM)
        assert isinstance(presence, PresenceReply)
        assert (presence.room, presence.count, presence.users) == (ROOM, 0, [])
        await writer.subscribe(ROOM)
        presence = await reader.presence(ROOM)
        assert (presence.count, presence.users) == (1, [ALICE])

        unsubscribed = await reader.unsubscribe(ROOM)
        assert unsubscribed.room == ROOM
        await writer.publish(ROOM, "after")
        assert await no_more_messages(reader, 0.5) == []


async def test_history_pages_with_before_and_limit(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        for i in range(5):
            await chat.publish(ROOM, f"m{i}")
        assert [m.seq for m in await chat.history(ROOM, limit=2)] == [4, 5]
        assert [m.seq for m in await chat.history(ROOM, before=4, limit=2)] == [2, 3]
        assert [m.text for m in await chat.history(ROOM, before=2)] == ["m0"]
        assert await chat.history(OTHER_ROOM) == []


async def test_a_publish_retried_with_its_nonce_is_stored_once(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        first = await chat.publish(ROOM, "once", nonce="n-1")
        again = await chat.publish(ROOM, "once", nonce="n-1")
        assert again == Ack(id=2, room=ROOM, seq=first.seq, message_id=first.message_id)
        assert [m.text for m in await chat.history(ROOM)] == ["once"]


async def test_subscribe_since_replays_after_the_reply(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        for i in range(3):
            await writer.publish(ROOM, f"m{i}")
        subscribed = await reader.subscribe(ROOM, since=1)
        assert (subscribed.seq, subscribed.recovered) == (3, True)
        assert [m.seq for m in await messages(reader, 2)] == [2, 3]
        # Another epoch cannot be continued: no replay, and recovered says so.
        again = await reader.subscribe(ROOM, since=1, epoch="not-this-one")
        assert again.recovered is False
        assert await no_more_messages(reader, 0.3) == []


async def test_concurrent_requests_each_get_their_own_reply(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        acks, pongs = await asyncio.gather(
            asyncio.gather(*(chat.publish(ROOM, f"m{i}") for i in range(10))),
            asyncio.gather(*(chat.ping() for _ in range(10))),
        )
        assert sorted(ack.seq for ack in acks) == list(range(1, 11))
        ids = {ack.id for ack in acks} | {pong.id for pong in pongs}
        assert ids == set(range(1, 21))
        # Each publish got the ack of its own text.
        history = {m.seq: m.text for m in await chat.history(ROOM)}
        assert sorted(history[ack.seq] for ack in acks) == sorted(f"m{i}" for i in range(10))


async def test_an_error_reply_raises_chat_error_and_the_connection_lives(
    server: LiveServer,
) -> None:
    async with server.connect() as chat:
        with pytest.raises(ChatError) as refused:
            await chat.publish(ROOM, "anonymous")
        assert refused.value.code == "not_authenticated"
        assert refused.value.reason == "log in to chat"
        assert refused.value.request_id == 1
        assert str(refused.value) == "not_authenticated: log in to chat"
        assert not isinstance(refused.value, InvalidReply)
        assert await chat.ping() == Pong(id=2)
        # The error answered its request: it is not an event as well.
        with pytest.raises(TimeoutError):
            await chat.next_event(0.3)


async def test_request_sends_any_frame_under_the_clients_id(server: LiveServer) -> None:
    async with server.connect() as chat:
        with pytest.raises(ChatError) as refused:
            await chat.request({"type": "publish", "room": ROOM})
        assert refused.value.code == "invalid_frame"
        assert "'text'" in refused.value.reason
        assert refused.value.request_id == 1
        assert await chat.request({"type": "ping", "id": "mine"}) == Pong(id=2)
        with pytest.raises(ChatError) as unknown:
            await chat.request({"type": "shout"})
        assert (unknown.value.code, unknown.value.request_id) == ("unknown_type", 3)


async def test_send_raw_replies_are_not_matched(server: LiveServer) -> None:
    async with server.connect() as chat:
        await chat.send_raw('{"type":"shout","id":"raw-1"}')
        event = await chat.next_event(5)
        assert isinstance(event, ErrorFrame)
        assert (event.id, event.code) == ("raw-1", "unknown_type")
        # A reply that is not an error answers no pending request: it is dropped.
        await chat.send_raw(b'{"type":"ping","id":"raw-2"}')
        assert await chat.ping() == Pong(id=1)
        with pytest.raises(TimeoutError):
            await chat.next_event(0.3)


async def test_a_request_without_a_reply_times_out() -> None:
    async with scripted(answering(lambda request: None)) as url:
        chat = await ChatClient.open(url, request_timeout=0.2)
        try:
            with pytest.raises(TimeoutError, match=r"no reply to request 1 within 0\.2 s"):
                await chat.ping()
            assert not chat.closed
        finally:
            await chat.close()


async def test_a_late_reply_is_dropped() -> None:
    def late(request: dict[str, Any]) -> str | None:
        # Request 1 is answered only with request 2, too late.
        if request["id"] == 1:
            return None
        return '{"type":"pong","id":1}\n' + json.dumps({"type": "pong", "id": request["id"]})

    async with (
        scripted(answering(late)) as url,
        ChatClient.connect(url, request_timeout=0.2) as chat,
    ):
        with pytest.raises(TimeoutError):
            await chat.ping()
        assert await chat.ping() == Pong(id=2)
        with pytest.raises(TimeoutError):
            await chat.next_event(0.1)


# -- events ------------------------------------------------------------------------------


async def test_events_are_read_after_the_close_then_end(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer:
        acks = [await writer.publish(ROOM, f"m{i}") for i in range(5)]
    async with server.connect() as reader:
        # The replay comes after the reply and before the pong: all five are queued.
        await reader.subscribe(ROOM, since=0)
        await reader.ping()
    assert reader.closed
    events = [event async for event in reader.events()]
    assert [(e.seq, e.text) for e in events if isinstance(e, Message)] == [
        (ack.seq, f"m{i}") for i, ack in enumerate(acks)
    ]
    assert len(events) == 5
    assert [event async for event in reader.events()] == []


async def test_every_events_reader_ends_at_the_close(server: LiveServer) -> None:
    chat = await ChatClient.open(server.url)

    async def read_all() -> list[Event]:
        return [event async for event in chat.events()]

    readers = [asyncio.create_task(read_all()) for _ in range(3)]
    await chat.ping()
    await chat.close()
    async with asyncio.timeout(5):
        assert await asyncio.gather(*readers) == [[], [], []]


async def test_next_event_waits_at_most_its_timeout(server: LiveServer) -> None:
    async with server.connect() as chat:
        await chat.subscribe(ROOM)
        with pytest.raises(TimeoutError):
            await chat.next_event(0.1)
        await server.services.rooms.announce(ROOM, "went_live", {"title": "hi"})
        assert await chat.next_event(5) == EventFrame(
            room=ROOM, kind="went_live", data={"title": "hi"}
        )


async def test_a_full_events_queue_drops_and_marks_the_gap(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer:
        for i in range(5):
            await writer.publish(ROOM, f"m{i}")
        async with server.connect(max_events=3) as reader:
            # The replay of 5 comes after the reply and before the pong: the queue takes 3.
            await reader.subscribe(ROOM, since=0)
            assert await reader.ping() == Pong(id=2)  # replies never queue
            assert reader.overflowed
            assert reader.dropped_events == 2
            assert [m.seq for m in await messages(reader, 3)] == [1, 2, 3]
            assert await reader.next_event(1) == EventsDropped()
            with pytest.raises(TimeoutError):
                await reader.next_event(0.1)

            # With room again, events queue again; subscribing with `since` fills the gap.
            live = await writer.publish(ROOM, "m5")
            assert (await next_message(reader)).seq == live.seq == 6
            again = await reader.subscribe(ROOM, since=3)
            assert again.recovered
            assert [m.seq for m in await messages(reader, 3)] == [4, 5, 6]
            assert reader.dropped_events == 2
    assert any("events queue full (3)" in r.getMessage() for r in caplog.records)


async def test_one_marker_per_run_of_dropped_events(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect(max_events=1) as reader:
        for i in range(3):
            await writer.publish(ROOM, f"m{i}")
        await reader.subscribe(ROOM, since=0)
        await reader.ping()
        assert await reader.next_event(1) == (await reader.history(ROOM))[0]
        assert await reader.next_event(1) == EventsDropped()
        # A second run, after the queue had room: a second marker.
        await reader.subscribe(ROOM, since=0)
        await reader.ping()
        assert (await next_message(reader)).seq == 1
        assert await reader.next_event(1) == EventsDropped()
        assert reader.dropped_events == 4


# -- what a correct server never sends ---------------------------------------------------


async def test_undecodable_lines_are_skipped() -> None:
    def reply(request: dict[str, Any]) -> str:
        event = {"type": "event", "room": ROOM, "kind": "k", "data": {}}
        # Junk, a blank line and a line of another protocol around an event and the reply.
        pong = json.dumps({"type": "pong", "id": request["id"]})
        return "\n".join(["not json", "", json.dumps(event), '{"type":"mystery"}', "[1,2]", pong])

    async with scripted(answering(reply)) as url, ChatClient.connect(url) as chat:
        assert await chat.ping() == Pong(id=1)
        assert await chat.next_event(1) == EventFrame(room=ROOM, kind="k", data={})
        with pytest.raises(TimeoutError):
            await chat.next_event(0.1)
        assert not chat.closed


@pytest.mark.parametrize(
    "reply",
    [
        '{"type":"ack","id":1}',  # fields missing
        '{"type":"ack","id":1,"room":"r","seq":"one","message_id":"m"}',  # a field mistyped
        '{"type":"mystery","id":1}',  # an unknown type
    ],
)
async def test_an_undecodable_reply_raises_invalid_reply(reply: str) -> None:
    async with (
        scripted(answering(lambda request: reply)) as url,
        ChatClient.connect(url, request_timeout=5) as chat,
    ):
        with pytest.raises(InvalidReply) as invalid:
            await chat.publish(ROOM, "hello")
        assert invalid.value.code == "invalid_reply"
        assert invalid.value.request_id == 1
        assert invalid.value.reason.startswith("undecodable reply")
        assert isinstance(invalid.value, ChatError)


async def test_a_reply_of_the_wrong_type_raises_invalid_reply() -> None:
    async with (
        scripted(
            answering(lambda request: json.dumps({"type": "pong", "id": request["id"]}))
        ) as url,
        ChatClient.connect(url) as chat,
    ):
        with pytest.raises(InvalidReply, match="expected Subscribed to request 1, got Pong"):
            await chat.subscribe(ROOM)
        assert await chat.ping() == Pong(id=2)


async def test_history_holding_an_invalid_message_raises_invalid_reply() -> None:
    def reply(request: dict[str, Any]) -> str:
        bad = {"type": "message", "room": ROOM, "seq": 1}  # no text, no user...
        return json.dumps({"type": "history", "id": request["id"], "room": ROOM, "messages": [bad]})

    async with scripted(answering(reply)) as url, ChatClient.connect(url) as chat:
        with pytest.raises(InvalidReply, match="history holds an invalid message"):
            await chat.history(ROOM)


async def test_an_error_for_no_pending_request_is_an_event() -> None:
    def reply(request: dict[str, Any]) -> str:
        stray = {"type": "error", "id": 99, "code": "late", "reason": "for no one"}
        return json.dumps(stray) + "\n" + json.dumps({"type": "pong", "id": request["id"]})

    async with scripted(answering(reply)) as url, ChatClient.connect(url) as chat:
        await chat.ping()
        assert await chat.next_event(1) == ErrorFrame(id=99, code="late", reason="for no one")


async def test_pending_requests_fail_when_the_server_drops_the_connection() -> None:
    async def drop(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(1011, "server broke")

    async with scripted(drop) as url:
        chat = await ChatClient.open(url)
        with pytest.raises(ConnectionClosedError):
            await chat.ping()
        await chat.wait_closed()
        assert (chat.close_code, chat.close_reason) == (1011, "server broke")
        with pytest.raises(ConnectionClosedError):
            await chat.next_event(1)
        await chat.close()


# -- login and logout --------------------------------------------------------------------


async def me(server: LiveServer, session: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.get("/api/me", headers={"cookie": f"{SESSION_COOKIE}={session}"})


async def test_login_registers_and_returns_a_working_session(server: LiveServer) -> None:
    session = await login(server.url, "1001", "alice", "Alice A.")
    profile = (await me(server, session)).json()
    assert (profile["login"], profile["display_name"]) == ("alice", "Alice A.")
    async with ChatClient.connect(server.url, session) as chat:
        assert (await chat.publish(ROOM, "hi")).seq == 1
    # Registration is idempotent: a known ID keeps its login and display name.
    again = await login(server.url + "/", "1001", "someone_else")
    assert again != session
    assert (await me(server, again)).json()["login"] == "alice"


async def test_login_and_logout_take_the_websocket_url(server: LiveServer) -> None:
    endpoint = websocket_url(server.url)
    session = await login(endpoint, "1001")
    assert (await me(server, session)).status_code == 200
    await logout(endpoint, session)
    assert (await me(server, session)).status_code == 401


async def test_logout_ends_only_that_session(server: LiveServer) -> None:
    first = await login(server.url, "1001", "alice")
    second = await login(server.url, "1001")
    await logout(server.url, first)
    assert (await me(server, first)).status_code == 401
    assert (await me(server, second)).status_code == 200
    await logout(server.url, first)  # already ended: harmless


@pytest.mark.parametrize(
    ("twitch_id", "login_name", "code"),
    [
        ("1002", "alice", "login_taken"),
        ("not-a-number", None, "invalid_input"),
        ("1003", "no spaces allowed", "invalid_input"),
    ],
)
async def test_login_errors_carry_the_servers_code(
    server: LiveServer, twitch_id: str, login_name: str | None, code: str
) -> None:
    await login(server.url, "1001", "alice")
    with pytest.raises(ChatError) as refused:
        await login(server.url, twitch_id, login_name)
    assert refused.value.code == code
    assert refused.value.reason


async def test_login_outside_dev_auth_is_refused(server_with: ServerWith) -> None:
    twitch = {
        "auth_mode": AuthMode.TWITCH,
        "twitch_client_id": "app",
        "twitch_client_secret": SecretStr("secret"),
        "public_url": "https://chat.example.com",
    }
    async with server_with(**twitch) as server:
        with pytest.raises(ChatError) as refused:
            await login(server.url, "1001", "alice")
    # login() registers first, and in the twitch mode registering by ID is the operators'.
    assert refused.value.code == "admin_disabled"


async def test_login_attempts_are_throttled(server_with: ServerWith) -> None:
    async with server_with(login_attempts_per_account=2) as server:
        for _ in range(2):
            await login(server.url, "1001", "alice")
        with pytest.raises(ChatError) as refused:
            await login(server.url, "1001", "alice")
    assert refused.value.code == "too_many_attempts"


async def test_logout_errors_carry_the_servers_code(server: LiveServer) -> None:
    session = await login(server.url, "1001", "alice")
    with pytest.raises(ChatError) as refused:
        await logout(server.url + "/elsewhere", session)
    assert refused.value.code == "not_found"
    assert (await me(server, session)).status_code == 200


def _answer(status: int, body: bytes = b"", **headers: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(status, content=body, headers=headers)
    )


UNAVAILABLE = b'{"error":{"code":"unavailable","message":"retry"}}'


@pytest.mark.parametrize(
    ("transport", "code", "reason"),
    [
        # A proxy's page, not the server's JSON: the status names the error.
        (_answer(502, b"<html>Bad Gateway</html>"), "http_502", "Bad Gateway"),
        (_answer(500, b'{"detail":"oops"}'), "http_500", "Internal Server Error"),
        (_answer(503, UNAVAILABLE), "unavailable", "retry"),
        # Success without the session cookie is no login.
        (_answer(200, b"{}", **{"set-cookie": "other=1"}), "no_session", "the server set no"),
    ],
    ids=["html", "json-without-error", "json-error", "no-cookie"],
)
async def test_login_reads_any_http_answer(
    transport: httpx.MockTransport, code: str, reason: str
) -> None:
    with pytest.raises(ChatError) as refused:
        await login("http://chat.invalid", "1001", transport=transport)
    assert refused.value.code == code
    assert refused.value.reason.startswith(reason)


async def test_logout_reads_any_http_answer() -> None:
    with pytest.raises(ChatError) as refused:
        await logout("http://chat.invalid", "token", transport=_answer(502, b"upstream down"))
    assert refused.value.code == "http_502"
    await logout("http://chat.invalid", "token", transport=_answer(204))


async def test_login_refuses_what_is_not_a_server_url() -> None:
    with pytest.raises(ValueError, match="not an http"):
        await login("chat.example:8000", "1001")
