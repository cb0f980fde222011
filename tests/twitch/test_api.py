"""TwitchAPI against the fake Twitch: the app token, batching, rate limits, retries,
timeouts, and the OAuth code exchange, as streamchat's own client does them."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from streamchat.errors import LoginExpired, TwitchRefused, TwitchUnavailable
from streamchat.twitch.api import TwitchAPI
from tests.twitch.fake import FakeTwitch, Fault, TwitchUser, fake_twitch_server

USERS = "/helix/users"
TOKEN = "/oauth2/token"


@asynccontextmanager
async def twitch_api(
    fake: FakeTwitch, *, call_timeout: float = 5.0, client_secret: str | None = None
) -> AsyncIterator[TwitchAPI]:
    api = TwitchAPI(
        client_id=fake.client_id,
        client_secret=fake.client_secret if client_secret is None else client_secret,
        id_url=fake.id_url,
        api_url=fake.api_url,
        timeout=call_timeout,
    )
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def api(fake_twitch: FakeTwitch) -> AsyncIterator[TwitchAPI]:
    async with twitch_api(fake_twitch) as client:
        yield client


@pytest.fixture
def streamer(fake_twitch: FakeTwitch) -> TwitchUser:
    return fake_twitch.add_user("PixelPaladin", user_id="447712783")


def app_tokens(fake: FakeTwitch) -> list[str]:
    return [t.access_token for t in fake.tokens if t.is_app_token]


# -- the app token ---------------------------------------------------------------------


async def test_the_app_token_is_fetched_once_and_reused(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    # Concurrent first calls share one fetch; later calls reuse it.
    await asyncio.gather(*(api.users(ids=[streamer.id]) for _ in range(5)))
    await api.streams([streamer.id])
    await api.users(logins=["pixelpaladin"])

    [token_request] = fake_twitch.requests_to(TOKEN)
    assert token_request.form["grant_type"] == ["client_credentials"]
    assert token_request.form["client_id"] == [fake_twitch.client_id]
    [token] = app_tokens(fake_twitch)
    helix = fake_twitch.requests_to(USERS) + fake_twitch.requests_to("/helix/streams")
    assert len(helix) == 7
    assert {r.headers["Authorization"] for r in helix} == {f"Bearer {token}"}


@pytest.mark.parametrize("lose_it", ["expire_token", "revoke_token"])
async def test_a_token_twitch_no_longer_takes_is_renewed_and_the_call_succeeds(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser, lose_it: str
) -> None:
    await api.users(ids=[streamer.id])
    [old] = app_tokens(fake_twitch)
    getattr(fake_twitch, lose_it)(old)

    [user] = await api.users(ids=[streamer.id])

    assert user.id == streamer.id
    assert len(fake_twitch.requests_to(TOKEN)) == 2
    [_, new] = app_tokens(fake_twitch)
    # The call that met the 401 was made again, once, with the new token.
    assert [r.headers["Authorization"] for r in fake_twitch.requests_to(USERS)] == [
        f"Bearer {old}",
        f"Bearer {old}",
        f"Bearer {new}",
    ]


async def test_the_app_token_is_renewed_before_it_expires() -> None:
    # 301.5 s of life: renewed 300 s early, so it is good for about a second here.
    async with fake_twitch_server(app_token_ttl=301.5) as fake, twitch_api(fake) as api:
        user = fake.add_user("pixelpaladin")
        await api.users(ids=[user.id])
        await api.users(ids=[user.id])
        assert len(fake.requests_to(TOKEN)) == 1
        await asyncio.sleep(1.1)
        await api.users(ids=[user.id])
        assert len(fake.requests_to(TOKEN)) == 2
        # Renewed, not found out by a 401: every Helix call was made exactly once.
        assert len(fake.requests_to(USERS)) == 3


async def test_a_wrong_client_secret_is_unavailable_naming_the_credentials(
    fake_twitch: FakeTwitch, streamer: TwitchUser
) -> None:
    async with twitch_api(fake_twitch, client_secret="not-the-secret") as api:
        started = time.monotonic()
        with pytest.raises(TwitchUnavailable, match="credentials") as raised:
            await api.users(ids=[streamer.id])
    assert raised.value.code == "twitch_unavailable"
    # The operator's mistake: not retried, and Helix never asked.
    assert time.monotonic() - started < 1.0
    assert len(fake_twitch.requests_to(TOKEN)) == 1
    assert fake_twitch.requests_to(USERS) == []


# -- batching --------------------------------------------------------------------------


async def test_150_ids_take_two_requests_of_at_most_100_each(
    fake_twitch: FakeTwitch, api: TwitchAPI
) -> None:
    users = [fake_twitch.add_user(f"user{n:03d}") for n in range(150)]

    found = await api.users(ids=[u.id for u in users])

    assert sorted(u.id for u in found) == sorted(u.id for u in users)
    requests = fake_twitch.requests_to(USERS)
    assert len(requests) == 2
    asked = [r.query["id"] for r in requests]
    assert all(len(ids) <= 100 for ids in asked)
    assert sorted(asked[0] + asked[1]) == sorted(u.id for u in users)
    [token] = app_tokens(fake_twitch)
    for request in requests:
        assert request.headers["Client-Id"] == fake_twitch.client_id
        assert request.headers["Authorization"] == f"Bearer {token}"


async def test_streams_of_150_users_take_two_requests(
    fake_twitch: FakeTwitch, api: TwitchAPI
) -> None:
    users = [fake_twitch.add_user(f"user{n:03d}") for n in range(150)]
    live = [users[5], users[120]]
    for n, user in enumerate(live):
        fake_twitch.set_live(user.id, title=f"stream {n}", viewer_count=10 + n)

    streams = await api.streams([u.id for u in users])

    assert sorted((s.user_id, s.title) for s in streams) == sorted(
        (u.id, f"stream {n}") for n, u in enumerate(live)
    )
    requests = fake_twitch.requests_to("/helix/streams")
    assert [len(r.query["user_id"]) for r in requests] == [100, 50]


async def test_unknown_ids_and_logins_are_simply_absent(
    api: TwitchAPI, streamer: TwitchUser
) -> None:
    found = await api.users(ids=[streamer.id, "999999999"], logins=["PixelPaladin", "nobody_x"])
    assert [u.id for u in found] == [streamer.id]
    assert await api.users(ids=["999999999"]) == []
    assert await api.users() == []


# -- failures and retries ----------------------------------------------------------------


async def test_two_503s_then_success(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    fake_twitch.inject(USERS, Fault.error(503), times=2)
    [user] = await api.users(ids=[streamer.id])
    assert user.login == "pixelpaladin"
    assert len(fake_twitch.requests_to(USERS)) == 3


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_every_time_give_up_after_four_attempts(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser, status: int
) -> None:
    fake_twitch.inject(USERS, Fault.error(status), times=10)
    with pytest.raises(TwitchUnavailable, match=f"server error {status}"):
        await api.users(ids=[streamer.id])
    requests = fake_twitch.requests_to(USERS)
    assert len(requests) == 4
    # With backoff between them, not in a burst.
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.1 for gap in gaps), gaps


async def test_the_last_failed_attempt_is_reported_at_once(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    fake_twitch.inject(USERS, Fault.error(503), times=10)
    with pytest.raises(TwitchUnavailable):
        await api.users(ids=[streamer.id])
    last = fake_twitch.requests_to(USERS)[-1]
    assert time.time() - last.received_at < 0.5


async def test_a_429_with_a_near_reset_waits_for_it_and_succeeds(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    fake_twitch.inject(USERS, Fault.rate_limited(reset_in=0.5))
    [user] = await api.users(ids=[streamer.id])
    assert user.id == streamer.id
    first, second = fake_twitch.requests_to(USERS)
    # Not before the reset the 429 announced (whole seconds, rounded up).
    assert second.received_at >= math.ceil(first.received_at + 0.5)


async def test_a_429_with_a_reset_beyond_the_timeout_is_unavailable_at_once(
    fake_twitch: FakeTwitch, streamer: TwitchUser
) -> None:
    async with twitch_api(fake_twitch, call_timeout=2.0) as api:
        fake_twitch.inject(USERS, Fault.rate_limited(reset_in=30))
        started = time.monotonic()
        with pytest.raises(TwitchUnavailable, match="rate limit"):
            await api.users(ids=[streamer.id])
        assert time.monotonic() - started < 1.0
    assert len(fake_twitch.requests_to(USERS)) == 1


async def test_an_empty_bucket_is_waited_for_rather_than_earning_a_429(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    fake_twitch.set_rate_limit(2, window=1.0)
    for _ in range(3):
        await api.users(ids=[streamer.id])
    first, _, third = fake_twitch.requests_to(USERS)
    # Three calls, three requests: the third waited for the refill instead of being refused.
    assert third.received_at >= first.received_at + 1.0


async def test_an_empty_bucket_refilling_beyond_the_timeout_is_unavailable_without_asking(
    fake_twitch: FakeTwitch, streamer: TwitchUser
) -> None:
    fake_twitch.set_rate_limit(1, window=60.0)
    async with twitch_api(fake_twitch, call_timeout=2.0) as api:
        await api.users(ids=[streamer.id])
        started = time.monotonic()
        with pytest.raises(TwitchUnavailable, match="rate limit"):
            await api.users(ids=[streamer.id])
        assert time.monotonic() - started < 1.0
    assert len(fake_twitch.requests_to(USERS)) == 1


async def test_an_answer_slower_than_the_timeout_is_unavailable(
    fake_twitch: FakeTwitch, streamer: TwitchUser
) -> None:
    fake_twitch.inject(USERS, Fault.slow(2.0), times=4)
    async with twitch_api(fake_twitch, call_timeout=0.3) as api:
        with pytest.raises(TwitchUnavailable, match="in time"):
            await api.users(ids=[streamer.id])
    assert len(fake_twitch.requests_to(USERS)) == 4


async def test_one_slow_answer_is_retried(fake_twitch: FakeTwitch, streamer: TwitchUser) -> None:
    fake_twitch.inject(USERS, Fault.slow(2.0))
    async with twitch_api(fake_twitch, call_timeout=0.3) as api:
        [user] = await api.users(ids=[streamer.id])
    assert user.id == streamer.id
    assert len(fake_twitch.requests_to(USERS)) == 2


async def test_a_hang_up_is_retried(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    fake_twitch.inject(USERS, Fault.hang_up())
    [user] = await api.users(ids=[streamer.id])
    assert user.id == streamer.id
    assert len(fake_twitch.requests_to(USERS)) == 2


async def test_other_4xx_are_refused_without_retrying(
    fake_twitch: FakeTwitch, api: TwitchAPI
) -> None:
    # Get Users with neither id nor login, on an app token: Twitch's 400.
    with pytest.raises(TwitchRefused, match="id or login query parameter is required") as raised:
        await api.helix("GET", USERS)
    assert raised.value.twitch_status == 400
    assert len(fake_twitch.requests_to(USERS)) == 1


async def test_a_401_after_a_server_error_still_renews_the_token(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    await api.users(ids=[streamer.id])
    fake_twitch.expire_token()
    fake_twitch.inject(USERS, Fault.error(503))

    [user] = await api.users(ids=[streamer.id])

    assert user.id == streamer.id
    assert len(fake_twitch.requests_to(TOKEN)) == 2


# -- OAuth: a viewer's login -----------------------------------------------------------


async def authorization_code(api: TwitchAPI, fake: FakeTwitch, user: TwitchUser) -> str:
    """What Twitch sends the browser back with after the user consents."""
    fake.log_in_as(user.id)
    url = api.authorize_url(redirect_uri=fake.redirect_uri, state="st4te", scope="")
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        response = await browser.get(url)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"] == ["st4te"]
    return query["code"][0]


async def test_a_code_gives_the_users_token_once(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    code = await authorization_code(api, fake_twitch, streamer)

    token = await api.exchange_code(code, redirect_uri=fake_twitch.redirect_uri)
    info = await api.validate(token)
    assert (info.client_id, info.user_id, info.login) == (
        fake_twitch.client_id,
        streamer.id,
        "pixelpaladin",
    )
    assert (await api.token_user(token)).id == streamer.id

    with pytest.raises(LoginExpired):
        await api.exchange_code(code, redirect_uri=fake_twitch.redirect_uri)

    await api.revoke(token)
    with pytest.raises(LoginExpired):
        await api.validate(token)


async def test_an_expired_or_made_up_code_is_a_login_expired(
    fake_twitch: FakeTwitch, api: TwitchAPI, streamer: TwitchUser
) -> None:
    code = await authorization_code(api, fake_twitch, streamer)
    fake_twitch.expire_code(code)
    with pytest.raises(LoginExpired) as raised:
        await api.exchange_code(code, redirect_uri=fake_twitch.redirect_uri)
    assert raised.value.code == "login_expired"
    with pytest.raises(LoginExpired):
        await api.exchange_code("made-up-code", redirect_uri=fake_twitch.redirect_uri)
