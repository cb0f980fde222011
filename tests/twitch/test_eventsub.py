"""EventSub end to end: a live server with the fake Twitch as its stream source (Helix) and
as the sender of its webhooks, and a chat client in the streamer's room."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streamchat.client import ChatClient
from streamchat.config import Settings
from streamchat.protocol import EventFrame
from streamchat.twitch.sample import sample_streamer_rows
from tests.twitch.fake import (
    Delivery,
    FakeTwitch,
    Subscription,
    TwitchUser,
    fake_twitch_server,
    signature,
)
from tests.ws.conftest import LiveServer, live_server

SECRET = "eventsub-secret-for-the-tests"
PUBLIC_URL = "https://chat.example"
CALLBACK = f"{PUBLIC_URL}/api/twitch/eventsub"
ADMIN_TOKEN = "admin-token-for-the-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: A catalogue streamer who is offline in the sample data, so the server's first poll
#: (Helix: nobody live) says nothing in their room.
ROOM = "grimgrindset"
KINDS = {"stream.online": "1", "stream.offline": "1", "channel.update": "2"}


@pytest.fixture
async def twitch() -> AsyncIterator[FakeTwitch]:
    """The fake Twitch, knowing every sample streamer under their catalogue ids."""
    async with fake_twitch_server() as fake:
        for row in sample_streamer_rows():
            fake.add_user(row["login"], user_id=row["id"], display_name=row["display_name"])
        yield fake


def twitch_settings(tmp_path: Path, twitch: FakeTwitch, **overrides: Any) -> Settings:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        run_singletons=True,
        watch_source="helix",
        # One poll at start, then only those the tests ask for (the refresh command).
        watch_interval=3600.0,
        twitch_client_id=twitch.client_id,
        twitch_client_secret=SecretStr(twitch.client_secret),
        twitch_id_url=twitch.id_url,
        twitch_api_url=twitch.api_url,
        public_url=PUBLIC_URL,
        twitch_eventsub_secret=SecretStr(SECRET),
        admin_token=ADMIN_TOKEN,
    )
    return settings.model_copy(update=overrides)


async def wait_for(condition: Callable[[], object], within: float = 10.0) -> None:
    """Until ``condition()`` holds: what the fake records has no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(settings: Settings, twitch: FakeTwitch) -> AsyncIterator[LiveServer]:
    """The server, once its stream watcher has subscribed and recorded its first poll."""
    polls = len(twitch.requests_to("/helix/streams"))
    async with live_server(settings) as server:
        twitch.webhook_origin = server.url
        # The watcher subscribes, then polls: a poll under way means subscribing is over,
        # and a command queued behind it returns once the poll is recorded.
        await wait_for(lambda: len(twitch.requests_to("/helix/streams")) > polls)
        async with httpx.AsyncClient(base_url=server.url, headers=ADMIN) as http:
            await refresh(http)
        yield server


async def refresh(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The watcher's next poll, now: what it changed."""
    response = await http.post(
        "/api/admin/actors/stream-watcher/commands", json={"command": "refresh"}
    )
    assert response.status_code == 200, response.text
    changed: list[dict[str, Any]] = response.json()["reply"]["changed"]
    return changed


@dataclass
class Stack:
    server: LiveServer
    twitch: FakeTwitch
    http: httpx.AsyncClient
    chat: ChatClient
    streamer: TwitchUser

    def subscription(self, kind: str) -> Subscription:
        [found] = [
            s
            for s in self.twitch.subscriptions
            if s.type == kind and s.condition["broadcaster_user_id"] == self.streamer.id
        ]
        return found

    async def shown(self) -> dict[str, Any]:
        response = await self.http.get(f"/api/streamers/{ROOM}")
        assert response.status_code == 200
        shown: dict[str, Any] = response.json()
        return shown

    async def events(self) -> list[EventFrame]:
        """Every event the room had since the last call.

        A barrier event goes through the same path as the watcher's (the room's broker
        channel), so whatever the server announced before it has arrived when it does.
        """
        nonce = str(uuid.uuid4())
        response = await self.http.post(
            f"/api/admin/rooms/{ROOM}/events", json={"kind": "barrier", "data": {"n": nonce}}
        )
        assert response.status_code == 202, response.text
        out: list[EventFrame] = []
        async with asyncio.timeout(10):
            while True:
                event = await self.chat.next_event(None)
                if not isinstance(event, EventFrame):
                    continue
                if event.kind == "barrier" and event.data == {"n": nonce}:
                    return out
                out.append(event)


@pytest.fixture
async def stack(tmp_path: Path, twitch: FakeTwitch) -> AsyncIterator[Stack]:
    async with (
        running(twitch_settings(tmp_path, twitch), twitch) as server,
        httpx.AsyncClient(base_url=server.url, headers=ADMIN) as http,
        server.connect() as chat,
    ):
        await chat.subscribe(ROOM)
        [streamer] = [u for u in twitch.users.values() if u.login == ROOM]
        stack = Stack(server, twitch, http, chat, streamer)
        for kind in KINDS:
            delivery = await twitch.verify_callback(stack.subscription(kind))
            assert delivery.response.status_code == 200
        assert await stack.events() == []
        yield stack


def online_subscription(broadcaster_id: str) -> Subscription:
    """A ``stream.online`` subscription the server did not make (the fake sends webhooks
    for it all the same, signed with the server's secret)."""
    return Subscription(
        type="stream.online",
        version="1",
        condition={"broadcaster_user_id": broadcaster_id},
        callback=CALLBACK,
        secret=SECRET,
    )


def started_at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- subscriptions ---------------------------------------------------------------------


async def test_subscriptions_are_made_at_start_for_the_catalogue_once(
    tmp_path: Path, twitch: FakeTwitch
) -> None:
    settings = twitch_settings(tmp_path, twitch)
    catalogue = {row["id"] for row in sample_streamer_rows()}
    expected = {(kind, version, id_) for kind, version in KINDS.items() for id_ in catalogue}

    async with running(settings, twitch):
        made = twitch.subscriptions
        assert {(s.type, s.version, s.condition["broadcaster_user_id"]) for s in made} == expected
        assert len(made) == len(expected)
        assert {s.callback for s in made} == {CALLBACK}
        assert {s.secret for s in made} == {SECRET}

        # Twitch's challenge is echoed, as plain text, and the subscription is enabled.
        delivery = await twitch.verify_callback(made[0])
        assert delivery.response.status_code == 200
        assert delivery.response.headers["content-type"].startswith("text/plain")
        assert delivery.response.text == delivery.payload["challenge"]
        assert made[0].status == "enabled"

    # A restart finds them (pending or enabled) and makes no second set.
    async with running(settings, twitch):
        assert len(twitch.subscriptions) == len(expected)


async def test_without_the_secret_the_endpoint_is_not_found_and_nothing_is_subscribed(
    tmp_path: Path, twitch: FakeTwitch
) -> None:
    settings = twitch_settings(tmp_path, twitch, twitch_eventsub_secret=None)
    async with running(settings, twitch):
        assert twitch.subscriptions == []
        [streamer] = [u for u in twitch.users.values() if u.login == ROOM]
        twitch.set_live(streamer.id)
        delivery = await twitch.notify(
            online_subscription(streamer.id), twitch.stream_online_event(streamer.id)
        )
        assert delivery.response.status_code == 404
        assert delivery.response.json()["error"]["code"] == "not_found"


async def test_a_notification_the_watcher_cannot_take_is_refused_and_its_retry_is_no_replay(
    tmp_path: Path, twitch: FakeTwitch
) -> None:
    # No process runs the stream watcher: the webhook cannot be recorded.
    settings = twitch_settings(tmp_path, twitch, run_singletons=False)
    async with live_server(settings) as server:
        twitch.webhook_origin = server.url
        [streamer] = [u for u in twitch.users.values() if u.login == ROOM]
        twitch.set_live(streamer.id)
        first = await twitch.notify(
            online_subscription(streamer.id), twitch.stream_online_event(streamer.id)
        )
        assert first.response.status_code == 503
        assert first.response.json()["error"]["code"] == "actor_unavailable"
        # Twitch retries the same message: not handled the first time, it is no replay
        # (a replay would be acknowledged with 204 and dropped).
        retried = await twitch.replay(first)
        assert retried.response.status_code == 503


# -- notifications -----------------------------------------------------------------------


async def test_stream_online_is_recorded_and_announced_once(stack: Stack) -> None:
    stream = stack.twitch.set_live(stack.streamer.id, title="Any% glitchless", viewer_count=42)
    event = stack.twitch.stream_online_event(stack.streamer.id)

    [delivery] = await stack.twitch.notify_all("stream.online", event)

    assert delivery.response.status_code == 204
    shown = await stack.shown()
    assert shown["live"] is True
    assert started_at(shown["started_at"]) == datetime.fromtimestamp(stream.started_at, UTC)
    [announced] = await stack.events()
    assert (announced.room, announced.kind) == (ROOM, "stream.online")
    assert announced.data["login"] == ROOM
    assert announced.data["id"] == stack.streamer.id
    assert announced.data["live"] is True
    assert started_at(announced.data["started_at"]) == started_at(shown["started_at"])

    # Twitch delivering the same message again: acknowledged, not handled again.
    replayed = await stack.twitch.replay(delivery)
    assert replayed.response.status_code == 204
    assert await stack.events() == []
    assert await stack.shown() == shown


async def test_the_next_poll_does_not_announce_the_stream_online_again(stack: Stack) -> None:
    stack.twitch.set_live(stack.streamer.id, title="Any% glitchless", viewer_count=42)
    await stack.twitch.notify_all(
        "stream.online", stack.twitch.stream_online_event(stack.streamer.id)
    )
    assert [e.kind for e in await stack.events()] == ["stream.online"]

    # Helix says the same stream is live: what stream.online does not carry (title,
    # audience) is news, the stream going live is not.
    changed = await refresh(stack.http)
    assert [(c["login"], c["kind"]) for c in changed] == [(ROOM, "stream.update")]
    [update] = await stack.events()
    assert update.kind == "stream.update"
    assert update.data["live"] is True
    assert (update.data["title"], update.data["viewer_count"]) == ("Any% glitchless", 42)

    # And once the database agrees with Helix, a poll has nothing to say.
    assert await refresh(stack.http) == []
    assert await stack.events() == []


async def test_a_stream_polling_saw_first_is_not_announced_again_by_eventsub(
    stack: Stack,
) -> None:
    stack.twitch.set_live(stack.streamer.id, title="Any% glitchless", viewer_count=42)
    changed = await refresh(stack.http)
    assert [(c["login"], c["kind"]) for c in changed] == [(ROOM, "stream.online")]
    assert [e.kind for e in await stack.events()] == ["stream.online"]

    event = stack.twitch.stream_online_event(stack.streamer.id)
    [delivery] = await stack.twitch.notify_all("stream.online", event)

    assert delivery.response.status_code == 204
    assert await stack.events() == []
    shown = await stack.shown()
    assert (shown["live"], shown["title"], shown["viewer_count"]) == (True, "Any% glitchless", 42)


async def test_stream_offline_is_recorded_and_announced_once(stack: Stack) -> None:
    stack.twitch.set_live(stack.streamer.id, title="Any% glitchless", viewer_count=42)
    await refresh(stack.http)
    [online] = await stack.twitch.notify_all(
        "stream.online", stack.twitch.stream_online_event(stack.streamer.id)
    )
    assert [e.kind for e in await stack.events()] == ["stream.online"]
    stack.twitch.set_offline(stack.streamer.id)

    event = stack.twitch.stream_offline_event(stack.streamer.id)
    [delivery] = await stack.twitch.notify_all("stream.offline", event)

    assert delivery.response.status_code == 204
    [announced] = await stack.events()
    assert announced.kind == "stream.offline"
    assert announced.data["live"] is False
    assert announced.data["viewer_count"] == 0
    # Like Twitch, an offline channel keeps its last title.
    assert announced.data["title"] == "Any% glitchless"
    shown = await stack.shown()
    assert (shown["live"], shown["started_at"]) == (False, None)

    # Helix agrees, so the next poll says nothing; a second delivery (a new message id)
    # of the same news changes nothing either.
    assert await refresh(stack.http) == []
    [again] = await stack.twitch.notify_all("stream.offline", event)
    assert again.response.status_code == 204
    assert await stack.events() == []
    # A replayed stream.online, within its ten minutes, must not bring the stream back.
    replayed = await stack.twitch.replay(online)
    assert replayed.response.status_code == 204
    assert await stack.events() == []
    assert (await stack.shown())["live"] is False


async def test_channel_update_is_announced_as_a_stream_update_with_the_new_title(
    stack: Stack,
) -> None:
    stack.twitch.set_live(stack.streamer.id, title="Any% glitchless", viewer_count=42)
    await refresh(stack.http)
    assert [e.kind for e in await stack.events()] == ["stream.online"]

    event = stack.twitch.channel_update_event(
        stack.streamer.id,
        title="100% run, no skips",
        category_id="509658",
        category_name="Just Chatting",
    )
    [delivery] = await stack.twitch.notify_all("channel.update", event)

    assert delivery.response.status_code == 204
    [update] = await stack.events()
    assert update.kind == "stream.update"
    assert update.data["title"] == "100% run, no skips"
    assert update.data["game_name"] == "Just Chatting"
    assert update.data["live"] is True
    assert update.data["viewer_count"] == 42
    shown = await stack.shown()
    assert (shown["title"], shown["game_id"], shown["live"]) == (
        "100% run, no skips",
        "509658",
        True,
    )
    # The same change once more (say, Twitch and a retry): nothing new to announce.
    await stack.twitch.notify_all("channel.update", event)
    assert await stack.events() == []


async def test_a_notification_for_a_streamer_outside_the_catalogue_is_ignored(
    stack: Stack,
) -> None:
    stranger = stack.twitch.add_user("not_in_the_catalogue")
    stack.twitch.set_live(stranger.id)
    delivery = await stack.twitch.notify(
        online_subscription(stranger.id), stack.twitch.stream_online_event(stranger.id)
    )
    assert delivery.response.status_code == 204
    missing = await stack.http.get("/api/streamers/not_in_the_catalogue")
    assert missing.status_code == 404
    assert await stack.events() == []


async def test_revocation_is_acknowledged(stack: Stack) -> None:
    subscription = stack.subscription("stream.online")
    delivery = await stack.twitch.revoke_subscription(subscription, "authorization_revoked")
    assert delivery.response.status_code == 204
    assert delivery.payload["subscription"]["status"] == "authorization_revoked"
    assert await stack.events() == []
    assert (await stack.shown())["live"] is False


# -- deliveries that are refused -------------------------------------------------------


def refused(delivery: Delivery | httpx.Response, status: int, code: str, why: str = "") -> None:
    response = delivery.response if isinstance(delivery, Delivery) else delivery
    assert response.status_code == status, (why, response.text)
    assert response.json()["error"]["code"] == code, why


async def prepared(stack: Stack, event: dict[str, Any], **options: Any) -> Delivery:
    """A notification as the fake would send it, not yet delivered to the server: sent to
    the fake itself, then addressed to the server's callback for :meth:`FakeTwitch.replay`."""
    made = await stack.twitch.send_webhook(
        stack.subscription("stream.online"),
        "notification",
        event=event,
        to=f"{stack.twitch.url}/not-delivered",
        **options,
    )
    return Delivery(
        f"{stack.server.url}/api/twitch/eventsub", made.headers, made.body, made.response
    )


def altered(delivery: Delivery, **headers: str | None) -> Delivery:
    """``delivery`` with headers changed (``None``: removed)."""
    changed = {k: v for k, v in delivery.headers.items() if k not in headers}
    changed.update({k: v for k, v in headers.items() if v is not None})
    return Delivery(delivery.url, changed, delivery.body, delivery.response)


async def test_forged_stale_or_unsigned_deliveries_are_refused_and_change_nothing(
    stack: Stack,
) -> None:
    stack.twitch.set_live(stack.streamer.id, title="Any% glitchless")
    event = stack.twitch.stream_online_event(stack.streamer.id)
    genuine = await prepared(stack, event, message_id="m-1")
    replay = stack.twitch.replay

    attempts = {
        "signed with another secret": await prepared(
            stack, event, signing_secret="a-guessed-secret", message_id="m-1"
        ),
        "11 minutes old": await prepared(stack, event, age=660, message_id="m-1"),
        "11 minutes ahead": await prepared(stack, event, age=-660, message_id="m-1"),
        "another message id": altered(genuine, **{"Twitch-Eventsub-Message-Id": "m-2"}),
        "another timestamp": altered(
            genuine,
            **{"Twitch-Eventsub-Message-Timestamp": datetime.now(UTC).isoformat()},
        ),
        "no message id": altered(genuine, **{"Twitch-Eventsub-Message-Id": None}),
        "no timestamp": altered(genuine, **{"Twitch-Eventsub-Message-Timestamp": None}),
        "no signature": altered(genuine, **{"Twitch-Eventsub-Message-Signature": None}),
    }
    for why, attempt in attempts.items():
        refused(await replay(attempt), 403, "invalid_signature", why)
    tampered = genuine.body.replace(stack.streamer.id.encode(), b"565623511")
    assert tampered != genuine.body
    refused(
        await stack.http.post(genuine.url, content=tampered, headers=genuine.headers),
        403,
        "invalid_signature",
    )
    refused(await stack.http.post(genuine.url, content=genuine.body), 403, "invalid_signature")

    assert (await stack.shown())["live"] is False
    assert await stack.events() == []
    # Refused messages are not remembered: the genuine one with their id is handled.
    assert (await replay(genuine)).response.status_code == 204
    assert [e.kind for e in await stack.events()] == ["stream.online"]


def signed(body: bytes, message_type: str = "notification") -> dict[str, str]:
    message_id = str(uuid.uuid4())
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "Content-Type": "application/json",
        "Twitch-Eventsub-Message-Id": message_id,
        "Twitch-Eventsub-Message-Retry": "0",
        "Twitch-Eventsub-Message-Type": message_type,
        "Twitch-Eventsub-Message-Signature": signature(SECRET, message_id, timestamp, body),
        "Twitch-Eventsub-Message-Timestamp": timestamp,
        "Twitch-Eventsub-Subscription-Type": "stream.online",
        "Twitch-Eventsub-Subscription-Version": "1",
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"subscription": {"type": "stream.online"',
        b"not json at all",
        b'{"event": {"broadcaster_user_id": "728720318"}}',
        b'{"subscription": {"type": "stream.online"}, "event": {"broadcaster_user_id": 7}}',
        b"[]",
    ],
    ids=["truncated", "not-json", "no-subscription", "id-not-a-string", "a-list"],
)
async def test_a_correctly_signed_body_that_is_not_an_eventsub_message_is_422(
    stack: Stack, body: bytes
) -> None:
    stack.twitch.set_live(stack.streamer.id)
    headers = signed(body)
    response = await stack.http.post("/api/twitch/eventsub", content=body, headers=headers)
    refused(response, 422, "invalid_input")
    assert (await stack.shown())["live"] is False
    assert await stack.events() == []
    # Not remembered either: sent again under the same id, it is refused again rather
    # than acknowledged as a replay.
    again = await stack.http.post("/api/twitch/eventsub", content=body, headers=headers)
    refused(again, 422, "invalid_input")
