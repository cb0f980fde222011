"""Logging in with Twitch, through the real code against the fake Twitch: the browser's
round trip, the chat that follows, and every way a login can fail without a session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from streamchat.client import ChatClient, logout
from streamchat.config import AuthMode, Settings
from streamchat.cookies import SESSION_COOKIE
from streamchat.http.oauth import STATE_COOKIE
from tests.twitch.fake import FakeTwitch, Fault, TwitchUser, fake_twitch_server
from tests.ws.conftest import LiveServer, live_server

PUBLIC_URL = "https://chat.example.com"
CALLBACK = f"{PUBLIC_URL}/auth/twitch/callback"
ADMIN_TOKEN = "operator-token-0123456789"
ROOM = "pixelpaladin"


@pytest.fixture
async def twitch() -> AsyncIterator[FakeTwitch]:
    async with fake_twitch_server(redirect_uris=[CALLBACK]) as fake:
        yield fake


@pytest.fixture
def viewer(twitch: FakeTwitch) -> TwitchUser:
    user = twitch.add_user("MiraMoon", user_id="90210")
    user.profile_image_url = "https://static-cdn.jtvnw.net/jtv_user_pictures/miramoon-300x300.png"
    twitch.log_in_as(user.id)
    return user


def twitch_settings(twitch: FakeTwitch, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        run_singletons=False,
        auth_mode=AuthMode.TWITCH,
        twitch_client_id=twitch.client_id,
        twitch_client_secret=SecretStr(twitch.client_secret),
        twitch_id_url=twitch.id_url,
        twitch_api_url=twitch.api_url,
        public_url=PUBLIC_URL,
        admin_token=ADMIN_TOKEN,
        twitch_timeout=1.0,
    ).model_copy(update=overrides)


@pytest.fixture
async def server(twitch: FakeTwitch, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(twitch_settings(twitch, tmp_path)) as server:
        yield server


@pytest.fixture
async def browser(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that has cookies and does not follow redirects by itself."""
    async with httpx.AsyncClient(base_url=server.url, follow_redirects=False) as client:
        yield client


def keep_state(browser: httpx.AsyncClient, response: httpx.Response) -> None:
    """The state cookie is Secure (the public URL is https); the test's browser talks to
    the server over plain http, so it keeps the cookie as an https browser would."""
    browser.cookies.set(
        STATE_COOKIE, response.cookies[STATE_COOKIE], domain="127.0.0.1", path="/auth/twitch"
    )


async def start_login(browser: httpx.AsyncClient, twitch: FakeTwitch) -> str:
    """Click "Log in with Twitch" and consent; return where Twitch sends the browser back
    (the callback's path and query, on our server)."""
    response = await browser.get("/auth/twitch/login")
    assert response.status_code == 302
    keep_state(browser, response)
    consent = await browser.get(response.headers["location"])  # to the fake, cookies stay ours
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return f"{back.path}?{back.query}"


async def test_login_with_twitch_then_chat_then_logout(
    browser: httpx.AsyncClient, server: LiveServer, twitch: FakeTwitch, viewer: TwitchUser
) -> None:
    response = await browser.get("/auth/twitch/login")
    assert response.status_code == 302
    authorize = urlsplit(response.headers["location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == twitch.id_url
    assert authorize.path == "/oauth2/authorize"
    query = {name: values[0] for name, values in parse_qs(authorize.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == twitch.client_id
    assert query["redirect_uri"] == CALLBACK
    state_cookie = response.cookies[STATE_COOKIE]
    assert query["state"] == state_cookie
    assert len(state_cookie) >= 32
    set_cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=lax", "secure", "path=/auth/twitch", "max-age=600"):
        assert attribute in set_cookie
    keep_state(browser, response)

    consent = await browser.get(response.headers["location"])
    back = urlsplit(consent.headers["location"])
    done = await browser.get(f"{back.path}?{back.query}")
    assert done.status_code == 302, done.text
    assert done.headers["location"] == "/"
    session = done.cookies[SESSION_COOKIE]
    assert STATE_COOKIE not in browser.cookies  # spent

    me = await browser.get("/api/me")
    assert me.status_code == 200
    assert me.json()["twitch_id"] == viewer.id
    assert me.json()["login"] == "miramoon"
    assert me.json()["display_name"] == "MiraMoon"
    assert me.json()["profile_image_url"] == viewer.profile_image_url

    # No Twitch token is kept: the one the login used was revoked at once.
    assert len(twitch.requests_to("/oauth2/revoke")) == 1
    assert all(token.revoked for token in twitch.tokens if token.user_id == viewer.id)

    async with ChatClient.connect(server.url, session) as chat:
        await chat.subscribe(ROOM)
        ack = await chat.publish(ROOM, "hello from Twitch")
        history = await chat.history(ROOM)
        assert history[-1].seq == ack.seq
        assert history[-1].user.id == viewer.id
        await logout(server.url, session)
        await chat.wait_closed()
        assert chat.close_code == 4001
    assert (await browser.get("/api/me")).status_code == 401


async def test_logging_in_again_updates_the_user_and_starts_a_new_session(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser
) -> None:
    first = await browser.get(await start_login(browser, twitch))
    first_session = first.cookies[SESSION_COOKIE]
    viewer.display_name = "MiraTheMoon"
    viewer.login = "mirathemoon"
    second = await browser.get(await start_login(browser, twitch))
    assert second.status_code == 302
    assert second.cookies[SESSION_COOKIE] != first_session
    me = (await browser.get("/api/me")).json()
    assert (me["login"], me["display_name"]) == ("mirathemoon", "MiraTheMoon")


async def test_denied_consent_starts_no_session(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser
) -> None:
    twitch.deny_consent()
    response = await browser.get(await start_login(browser, twitch))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "login_denied"
    assert SESSION_COOKIE not in response.cookies
    assert twitch.requests_to("/oauth2/token") == []


async def test_a_person_whose_login_failed_is_sent_back_to_the_page(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser
) -> None:
    """A browser navigating asks for HTML: it gets the page, which explains, not JSON."""
    twitch.deny_consent()
    callback = await start_login(browser, twitch)
    page_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await browser.get(callback, headers={"Accept": page_accept})
    assert response.status_code == 302
    assert response.headers["location"] == "/?login_error=login_denied"
    assert SESSION_COOKIE not in response.cookies
    # The state was spent all the same.
    assert response.headers["set-cookie"].startswith(f"{STATE_COOKIE}=")


@pytest.mark.parametrize("state", ["missing-cookie", "wrong", "absent"])
async def test_a_state_that_is_not_this_browsers_is_refused(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser, state: str
) -> None:
    callback = await start_login(browser, twitch)
    path, query = callback.split("?", 1)
    params = {name: values[0] for name, values in parse_qs(query).items()}
    if state == "missing-cookie":
        browser.cookies.clear()  # another browser, handed the link
    elif state == "wrong":
        params["state"] = "x" * 43
    else:
        del params["state"]
    response = await browser.get(path, params=params)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "login_expired"
    assert SESSION_COOKIE not in response.cookies
    assert twitch.requests_to("/oauth2/token") == []  # the code was never even tried


async def test_a_reused_or_expired_code_starts_no_session(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser
) -> None:
    callback = await start_login(browser, twitch)
    state = browser.cookies[STATE_COOKIE]
    assert (await browser.get(callback)).status_code == 302
    # The same link again (its code used), with the state this browser had.
    browser.cookies.clear()
    browser.cookies.set(STATE_COOKIE, state, domain="127.0.0.1", path="/auth/twitch")
    replayed = await browser.get(callback)
    assert replayed.status_code == 401
    assert replayed.json()["error"]["code"] == "login_expired"
    assert SESSION_COOKIE not in replayed.cookies

    callback = await start_login(browser, twitch)
    twitch.expire_code()
    expired = await browser.get(callback)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "login_expired"


@pytest.mark.parametrize(
    "fault", [Fault.error(503), Fault.slow(3.0), Fault.hang_up()], ids=["5xx", "slow", "down"]
)
async def test_twitch_down_or_slow_is_a_clear_503(
    browser: httpx.AsyncClient, twitch: FakeTwitch, viewer: TwitchUser, fault: Fault
) -> None:
    callback = await start_login(browser, twitch)
    twitch.inject("/oauth2/token", fault)
    response = await browser.get(callback)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "twitch_unavailable"
    assert SESSION_COOKIE not in response.cookies


async def test_login_by_bare_id_is_refused(browser: httpx.AsyncClient, viewer: TwitchUser) -> None:
    response = await browser.post("/api/login", json={"twitch_id": viewer.id})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "dev_login_disabled"


async def test_registering_is_for_operators_and_checked_with_twitch(
    browser: httpx.AsyncClient, twitch: FakeTwitch
) -> None:
    twitch.add_user("LunaTides", user_id="31337")
    anyone = await browser.post("/api/users", json={"twitch_id": "31337"})
    assert anyone.status_code == 401
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    unknown = await browser.post("/api/users", json={"twitch_id": "424242"}, headers=admin)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "user_not_found"
    # Twitch's login and names, not the caller's.
    body = {"twitch_id": "31337", "login": "impostor", "display_name": "Impostor"}
    created = await browser.post("/api/users", json=body, headers=admin)
    assert created.status_code == 201
    assert (created.json()["login"], created.json()["display_name"]) == ("lunatides", "LunaTides")
    again = await browser.post("/api/users", json=body, headers=admin)
    assert again.status_code == 200


async def test_twitch_routes_are_refused_in_dev_mode(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}")
    async with (
        live_server(settings) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        for path in ("/auth/twitch/login", "/auth/twitch/callback?code=x&state=y"):
            response = await client.get(path)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "twitch_disabled"


async def test_many_viewers_log_in_one_after_the_other(
    server: LiveServer, twitch: FakeTwitch
) -> None:
    # More than the per-account login limit (10 a minute): each viewer is their own account.
    for n in range(12):
        viewer = twitch.add_user(f"Viewer{n}", user_id=str(70_000 + n))
        twitch.log_in_as(viewer.id)
        async with httpx.AsyncClient(base_url=server.url) as browser:
            done = await browser.get(await start_login(browser, twitch))
            assert done.status_code == 302, done.text
            assert SESSION_COOKIE in done.cookies
