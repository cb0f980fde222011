"""The fake Twitch answers as Twitch does: exercised with plain httpx, as the server would
talk to Twitch, never through streamchat's code."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.twitch.fake import FakeTwitch, Fault, TwitchUser, fake_twitch_server

REDIRECT_URI = "https://chat.example/auth/twitch/callback"
CALLBACK = "https://chat.example/twitch/eventsub"
SECRET = "s3cret-of-20-chars!!"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def twitch(clock: Clock) -> AsyncIterator[FakeTwitch]:
    async with fake_twitch_server(redirect_uris=[REDIRECT_URI], clock=clock) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=5.0) as client:
        yield client


@pytest.fixture
def streamer(twitch: FakeTwitch) -> TwitchUser:
    return twitch.add_user("PixelPaladin", user_id="447712783", email="pixel@example.com")


def helix_headers(twitch: FakeTwitch, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Client-Id": twitch.client_id}


async def authorize(
    http: httpx.AsyncClient, twitch: FakeTwitch, **overrides: str
) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": twitch.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "user:read:email",
        "state": "c3ab8aa609ea11e793ae92361f002671",
    } | overrides
    return await http.get(f"{twitch.id_url}/oauth2/authorize", params=params)


def redirect_query(response: httpx.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    base = f"{location.scheme}://{location.netloc}{location.path}"
    return base, {k: v[0] for k, v in parse_qs(location.query).items()}


async def exchange(http: httpx.AsyncClient, twitch: FakeTwitch, code: str) -> httpx.Response:
    return await http.post(
        f"{twitch.id_url}/oauth2/token",
        data={
            "client_id": twitch.client_id,
            "client_secret": twitch.client_secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
        },
    )


async def app_token(http: httpx.AsyncClient, twitch: FakeTwitch) -> str:
    response = await http.post(
        f"{twitch.id_url}/oauth2/token",
        data={
            "client_id": twitch.client_id,
            "client_secret": twitch.client_secret,
            "grant_type": "client_credentials",
        },
    )
    token: str = response.json()["access_token"]
    return token


# -- id.twitch.tv --------------------------------------------------------------------


async def test_authorization_code_flow_ends_with_the_users_own_record(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    twitch.log_in_as(streamer.id)

    back_to, query = redirect_query(await authorize(http, twitch))
    assert back_to == REDIRECT_URI
    assert query["state"] == "c3ab8aa609ea11e793ae92361f002671"
    assert query["scope"] == "user:read:email"

    tokens = await exchange(http, twitch, query["code"])
    assert tokens.status_code == 200
    body = tokens.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["scope"] == ["user:read:email"]
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0

    validated = await http.get(
        f"{twitch.id_url}/oauth2/validate",
        headers={"Authorization": f"OAuth {body['access_token']}"},
    )
    assert validated.status_code == 200
    assert validated.json() == {
        "client_id": twitch.client_id,
        "login": "pixelpaladin",
        "scopes": ["user:read:email"],
        "user_id": streamer.id,
        "expires_in": body["expires_in"],
    }

    me = await http.get(
        f"{twitch.api_url}/helix/users", headers=helix_headers(twitch, body["access_token"])
    )
    assert me.status_code == 200
    [user] = me.json()["data"]
    assert user["id"] == streamer.id
    assert user["login"] == "pixelpaladin"
    assert user["display_name"] == "PixelPaladin"
    assert user["email"] == "pixel@example.com"
    assert set(user) >= {
        "type",
        "broadcaster_type",
        "description",
        "profile_image_url",
        "offline_image_url",
        "view_count",
        "created_at",
    }


async def test_a_code_is_single_use_and_expires(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    twitch.log_in_as(streamer.id)
    _, first = redirect_query(await authorize(http, twitch))
    assert (await exchange(http, twitch, first["code"])).status_code == 200

    again = await exchange(http, twitch, first["code"])
    assert again.status_code == 400
    assert again.json() == {"status": 400, "message": "Invalid authorization code"}

    _, second = redirect_query(await authorize(http, twitch))
    twitch.expire_code(second["code"])
    expired = await exchange(http, twitch, second["code"])
    assert expired.json() == {"status": 400, "message": "Invalid authorization code"}


async def test_a_wrong_client_secret_is_forbidden(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    twitch.log_in_as(streamer.id)
    _, query = redirect_query(await authorize(http, twitch))
    response = await http.post(
        f"{twitch.id_url}/oauth2/token",
        data={
            "client_id": twitch.client_id,
            "client_secret": "not-the-secret",
            "code": query["code"],
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
        },
    )
    assert response.status_code == 403
    assert response.json() == {"status": 403, "message": "invalid client secret"}


async def test_no_code_without_a_signed_in_user_who_consents_on_a_registered_url(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    login_page = await authorize(http, twitch)
    assert login_page.status_code == 200
    assert login_page.headers["Content-Type"].startswith("text/html")

    twitch.log_in_as(streamer.id)
    twitch.deny_consent()
    back_to, query = redirect_query(await authorize(http, twitch, state="xyz"))
    assert back_to == REDIRECT_URI
    assert query == {
        "error": "access_denied",
        "error_description": "The user denied you access",
        "state": "xyz",
    }

    back_to, query = redirect_query(
        await authorize(http, twitch, redirect_uri="https://evil.example/steal")
    )
    assert back_to == REDIRECT_URI
    assert query["error"] == "redirect_mismatch"

    unknown = await authorize(http, twitch, client_id="somebody-else")
    assert unknown.status_code == 400


async def test_client_credentials_give_an_app_token_without_a_user(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    response = await http.post(
        f"{twitch.id_url}/oauth2/token",
        data={
            "client_id": twitch.client_id,
            "client_secret": twitch.client_secret,
            "grant_type": "client_credentials",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}

    validated = await http.get(
        f"{twitch.id_url}/oauth2/validate",
        headers={"Authorization": f"OAuth {body['access_token']}"},
    )
    assert set(validated.json()) == {"client_id", "scopes", "expires_in"}

    headers = helix_headers(twitch, body["access_token"])
    nobody = await http.get(f"{twitch.api_url}/helix/users", headers=headers)
    assert nobody.status_code == 400
    by_login = await http.get(
        f"{twitch.api_url}/helix/users", params={"login": "PixelPaladin"}, headers=headers
    )
    [user] = by_login.json()["data"]
    assert user["id"] == streamer.id
    assert "email" not in user


async def test_refresh_replaces_the_tokens_unless_the_grant_was_revoked(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    issued = twitch.issue_user_token(streamer.id, ["user:read:email"])
    twitch.expire_token(issued.access_token)

    def refresh(refresh_token: str | None) -> dict[str, str | None]:
        return {
            "client_id": twitch.client_id,
            "client_secret": twitch.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }

    refreshed = await http.post(f"{twitch.id_url}/oauth2/token", data=refresh(issued.refresh_token))
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != issued.refresh_token

    used = await http.post(f"{twitch.id_url}/oauth2/token", data=refresh(issued.refresh_token))
    assert used.json() == {
        "error": "Bad Request",
        "status": 400,
        "message": "Invalid refresh token",
    }

    twitch.revoke_token(refreshed.json()["access_token"])
    revoked = await http.post(
        f"{twitch.id_url}/oauth2/token", data=refresh(refreshed.json()["refresh_token"])
    )
    assert revoked.status_code == 400


# -- Helix ---------------------------------------------------------------------------


async def test_a_revoked_or_expired_token_gets_401(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    token = await app_token(http, twitch)
    url = f"{twitch.api_url}/helix/users?id={streamer.id}"
    assert (await http.get(url, headers=helix_headers(twitch, token))).status_code == 200

    revoked = await http.post(
        f"{twitch.id_url}/oauth2/revoke", data={"client_id": twitch.client_id, "token": token}
    )
    assert revoked.status_code == 200
    assert revoked.content == b""
    refused = await http.get(url, headers=helix_headers(twitch, token))
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "Unauthorized",
        "status": 401,
        "message": "Invalid OAuth token",
    }
    invalid = await http.get(
        f"{twitch.id_url}/oauth2/validate", headers={"Authorization": f"OAuth {token}"}
    )
    assert invalid.json() == {"status": 401, "message": "invalid access token"}

    other = await app_token(http, twitch)
    twitch.expire_token(other)
    assert (await http.get(url, headers=helix_headers(twitch, other))).status_code == 401


async def test_helix_needs_the_client_id_of_the_token(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    token = await app_token(http, twitch)
    url = f"{twitch.api_url}/helix/users?id={streamer.id}"
    mismatched = await http.get(
        url, headers={"Authorization": f"Bearer {token}", "Client-Id": "x" * 30}
    )
    assert mismatched.status_code == 401
    assert mismatched.json()["message"] == "Client ID and OAuth token do not match"
    missing = await http.get(url, headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 401
    assert (await http.get(url)).status_code == 401


async def test_users_are_looked_up_at_most_100_at_a_time(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    headers = helix_headers(twitch, await app_token(http, twitch))
    url = f"{twitch.api_url}/helix/users"
    unknown = [str(n) for n in range(1, 100)]

    batch = await http.get(url, params={"id": [*unknown, streamer.id]}, headers=headers)
    assert batch.status_code == 200
    assert [u["id"] for u in batch.json()["data"]] == [streamer.id]

    too_many = await http.get(
        url, params={"id": unknown, "login": ["pixelpaladin", "nobody"]}, headers=headers
    )
    assert too_many.status_code == 400
    assert too_many.json()["error"] == "Bad Request"


async def test_streams_lists_only_live_ones_a_page_at_a_time(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    luna = twitch.add_user("LunaTidesTV")
    grim = twitch.add_user("GrimGrindset")
    quiet = twitch.add_user("QuietOne")
    twitch.set_live(streamer.id, title="Any% glitchless", game_name="Celeste", viewer_count=50)
    twitch.set_live(luna.id, title="Cozy farming", viewer_count=900)
    twitch.set_live(grim.id, viewer_count=10)
    twitch.set_live(quiet.id)
    twitch.set_offline(quiet.id)
    headers = helix_headers(twitch, await app_token(http, twitch))
    url = f"{twitch.api_url}/helix/streams"
    ids = {"user_id": [streamer.id, luna.id, grim.id, quiet.id], "first": "1"}

    async def page(**cursor: str) -> tuple[list[str], dict[str, str]]:
        response = await http.get(url, params={**ids, **cursor}, headers=headers)
        assert response.status_code == 200
        body = response.json()
        return [s["user_login"] for s in body["data"]], body["pagination"]

    top, first = await page()
    assert top == ["lunatidestv"]
    second, middle = await page(after=first["cursor"])
    assert second == ["pixelpaladin"]
    assert await page(before=middle["cursor"]) == (["lunatidestv"], {"cursor": ANY})
    last, end = await page(after=middle["cursor"])
    assert (last, end) == (["grimgrindset"], {})

    [stream] = (await http.get(url, params={"user_id": streamer.id}, headers=headers)).json()[
        "data"
    ]
    assert stream["type"] == "live"
    assert (stream["title"], stream["game_name"], stream["viewer_count"]) == (
        "Any% glitchless",
        "Celeste",
        50,
    )

    too_many = await http.get(
        url, params={"user_id": [str(n) for n in range(101)]}, headers=headers
    )
    assert too_many.status_code == 400


async def test_an_empty_bucket_answers_429_until_it_resets(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser, clock: Clock
) -> None:
    twitch.set_rate_limit(3, window=60.0)
    headers = helix_headers(twitch, await app_token(http, twitch))
    url = f"{twitch.api_url}/helix/users?id={streamer.id}"

    remaining = []
    for _ in range(3):
        response = await http.get(url, headers=headers)
        assert response.headers["Ratelimit-Limit"] == "3"
        remaining.append(response.headers["Ratelimit-Remaining"])
    assert remaining == ["2", "1", "0"]

    refused = await http.get(url, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"] == "Too Many Requests"
    assert refused.headers["Ratelimit-Remaining"] == "0"
    reset = int(refused.headers["Ratelimit-Reset"])
    assert reset == int(clock.now) + 60

    clock.now = reset
    assert (await http.get(url, headers=headers)).status_code == 200


# -- faults and recorded requests ----------------------------------------------------


async def test_injected_faults_hit_the_next_requests_to_their_path(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser, clock: Clock
) -> None:
    headers = helix_headers(twitch, await app_token(http, twitch))
    url = f"{twitch.api_url}/helix/users?id={streamer.id}"
    twitch.inject("/helix/users", Fault.error(503), times=2)
    twitch.inject("/helix/users", Fault.rate_limited(reset_in=5))
    twitch.inject("/helix/users", Fault.hang_up())

    statuses = [(await http.get(url, headers=headers)).status_code for _ in range(2)]
    assert statuses == [503, 503]
    limited = await http.get(url, headers=headers)
    assert limited.status_code == 429
    assert limited.headers["Ratelimit-Reset"] == str(int(clock.now) + 5)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url, headers=headers)
    assert (await http.get(url, headers=headers)).status_code == 200


async def test_a_slow_answer_outlasts_the_clients_timeout(
    twitch: FakeTwitch, http: httpx.AsyncClient
) -> None:
    twitch.inject("/oauth2/token", Fault.slow(2.0))
    with pytest.raises(httpx.ReadTimeout):
        await http.post(f"{twitch.id_url}/oauth2/token", timeout=0.1)


async def test_every_request_is_recorded_as_sent(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    token = await app_token(http, twitch)
    await http.get(
        f"{twitch.api_url}/helix/users",
        params={"id": [streamer.id, "2"]},
        headers=helix_headers(twitch, token),
    )
    [token_request] = twitch.requests_to("/oauth2/token", "POST")
    assert token_request.form["grant_type"] == ["client_credentials"]
    [users] = twitch.requests_to("/helix/users")
    assert users.query["id"] == [streamer.id, "2"]
    assert users.headers["client-id"] == twitch.client_id


# -- EventSub ------------------------------------------------------------------------


async def test_subscriptions_follow_twitchs_rules(
    twitch: FakeTwitch, http: httpx.AsyncClient, streamer: TwitchUser
) -> None:
    url = f"{twitch.api_url}/helix/eventsub/subscriptions"
    headers = helix_headers(twitch, await app_token(http, twitch))

    def request(callback: str = CALLBACK, secret: str = SECRET) -> dict[str, object]:
        return {
            "type": "stream.online",
            "version": "1",
            "condition": {"broadcaster_user_id": streamer.id},
            "transport": {"method": "webhook", "callback": callback, "secret": secret},
        }

    created = await http.post(url, json=request(), headers=headers)
    assert created.status_code == 202
    body = created.json()
    [subscription] = body["data"]
    assert subscription["status"] == "webhook_callback_verification_pending"
    assert subscription["transport"] == {"method": "webhook", "callback": CALLBACK}
    assert subscription["condition"] == {"broadcaster_user_id": streamer.id}
    assert (body["total"], body["total_cost"], body["max_total_cost"]) == (1, 1, 10000)

    assert (await http.post(url, json=request(), headers=headers)).status_code == 409
    insecure = await http.post(url, json=request(callback="http://chat.example/"), headers=headers)
    assert insecure.status_code == 400
    short = await http.post(url, json=request(secret="short"), headers=headers)
    assert short.status_code == 400
    user_token = twitch.issue_user_token(streamer.id).access_token
    as_user = await http.post(url, json=request(), headers=helix_headers(twitch, user_token))
    assert as_user.status_code == 401

    listed = await http.get(url, headers=headers)
    assert [s["id"] for s in listed.json()["data"]] == [subscription["id"]]
    assert listed.json()["pagination"] == {}
    deleted = await http.delete(url, params={"id": subscription["id"]}, headers=headers)
    assert deleted.status_code == 204
    gone = await http.delete(url, params={"id": subscription["id"]}, headers=headers)
    assert gone.status_code == 404


@dataclass
class Receiver:
    """A webhook endpoint as the server under test would have, recording what arrives."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def eventsub(request: StarletteRequest) -> Response:
        body = await request.body()
        received.append((dict(request.headers), body))
        if request.headers["twitch-eventsub-message-type"] == "webhook_callback_verification":
            challenge = (await request.json())["challenge"]
            return PlainTextResponse(challenge)
        return Response(status_code=204)

    app = Starlette(routes=[Route("/twitch/eventsub", eventsub, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield Receiver(f"http://127.0.0.1:{sock.getsockname()[1]}", received)
    finally:
        server.should_exit = True
        await task
        sock.close()


def verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Twitch's documented check: HMAC-SHA256 of message id + timestamp + raw body."""
    message = (
        headers["twitch-eventsub-message-id"] + headers["twitch-eventsub-message-timestamp"]
    ).encode() + body
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["twitch-eventsub-message-signature"])


def sent_at(headers: dict[str, str]) -> datetime:
    timestamp = headers["twitch-eventsub-message-timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", timestamp)
    return datetime.strptime(timestamp[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


async def test_webhooks_are_signed_as_twitch_documents(
    streamer: TwitchUser, receiver: Receiver, http: httpx.AsyncClient, clock: Clock
) -> None:
    async with fake_twitch_server(clock=clock, webhook_origin=receiver.url) as twitch:
        twitch.add_user(streamer.login, user_id=streamer.id, display_name=streamer.display_name)
        created = await http.post(
            f"{twitch.api_url}/helix/eventsub/subscriptions",
            json={
                "type": "stream.online",
                "version": "1",
                "condition": {"broadcaster_user_id": streamer.id},
                "transport": {"method": "webhook", "callback": CALLBACK, "secret": SECRET},
            },
            headers=helix_headers(twitch, await app_token(http, twitch)),
        )
        [subscription] = twitch.subscriptions
        assert subscription.id == created.json()["data"][0]["id"]

        await twitch.verify_callback(subscription)
        assert subscription.status == "enabled"
        twitch.set_live(streamer.id, title="Any% glitchless")
        [delivery] = await twitch.notify_all(
            "stream.online", twitch.stream_online_event(streamer.id)
        )
        assert delivery.response.status_code == 204
        await twitch.notify(
            subscription, twitch.stream_online_event(streamer.id), signing_secret="x" * 20
        )
        await twitch.notify(subscription, twitch.stream_online_event(streamer.id), age=660)
        await twitch.replay(delivery)
        await twitch.revoke_subscription(subscription)

    (challenge, _), (online, body), (forged, _), (stale, _), (replayed, again), (revoked, gone) = (
        receiver.received
    )
    assert challenge["twitch-eventsub-message-type"] == "webhook_callback_verification"
    assert online["twitch-eventsub-message-type"] == "notification"
    assert online["twitch-eventsub-subscription-type"] == "stream.online"
    assert online["twitch-eventsub-subscription-version"] == "1"
    assert online["twitch-eventsub-message-retry"] == "0"
    assert verifies(SECRET, online, body)
    assert sent_at(online) == datetime.fromtimestamp(clock.now, UTC)
    event = httpx.Response(200, content=body).json()["event"]
    assert event["broadcaster_user_id"] == streamer.id
    assert event["type"] == "live"
    assert set(event) == {
        "id",
        "broadcaster_user_id",
        "broadcaster_user_login",
        "broadcaster_user_name",
        "type",
        "started_at",
    }

    assert not verifies(SECRET, forged, receiver.received[2][1])
    assert verifies(SECRET, stale, receiver.received[3][1])
    assert (sent_at(online) - sent_at(stale)).total_seconds() == 660
    assert replayed == online
    assert again == body
    assert revoked["twitch-eventsub-message-type"] == "revocation"
    assert httpx.Response(200, content=gone).json()["subscription"]["status"] == (
        "authorization_revoked"
    )
