"""The chat page, end to end in headless Chromium against a real server.

Two people in two browser contexts (separate cookies, separate networks) log
in, star a streamer, chat, lose their connection and come back; streams go
live; a message that looks like markup stays text. Screenshots of each view,
at desktop and phone width, are kept in build/test-artifacts/web/.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from streamchat.client import ChatClient, login
from tests.helpers import wait_for
from tests.web.conftest import (
    PHONE,
    Viewer,
    ViewerFactory,
    viewers_of,
    web_settings,
)
from tests.ws._process import reserve_port
from tests.ws.conftest import LiveServer, live_server

ADMIN_TOKEN = "operator-token-0123456789"


async def streamers(server: LiveServer) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        listing: list[dict[str, Any]] = (await http.get("/api/streamers")).json()
        return listing


async def a_streamer(
    server: LiveServer, *, live: bool | None = None, last: bool = False
) -> dict[str, Any]:
    """A streamer from the catalogue; with ``last``, one the directory does not show first."""
    found = [s for s in await streamers(server) if live is None or s["live"] is live]
    return found[-1] if last else found[0]


async def in_room(
    viewers: ViewerFactory, streamer: dict[str, Any], twitch_id: str, name: str
) -> Viewer:
    viewer = await viewers()
    await viewer.open()
    await viewer.log_in(twitch_id, name)
    await viewer.open_room(streamer["display_name"])
    return viewer


async def test_two_viewers_log_in_star_a_streamer_and_chat(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server, live=True, last=True)
    name = streamer["display_name"]
    alice, bob = await viewers(), await viewers()
    for viewer, twitch_id, display in ((alice, "1001", "Alice"), (bob, "1002", "Bob")):
        await viewer.open()
        await viewer.log_in(twitch_id, display)
        await expect(viewer.page.get_by_text(f"Logged in as {display}")).to_be_visible()
        # Starring the last streamer of the directory brings it to the top.
        star = viewer.page.get_by_role("button", name=f"Favourite {name}")
        await expect(star).to_have_attribute("aria-pressed", "false")
        await star.click()
        await expect(star).to_have_attribute("aria-pressed", "true")
        first = viewer.page.locator("#streamers > li").first
        await expect(first.get_by_role("link")).to_have_text(name)
    await alice.screenshot("directory-desktop")

    await alice.open_room(name)
    assert alice.page.url.endswith(f"/#/{streamer['login']}")
    await bob.open_room(name)

    # Each sees the other in the room, and Alice sees Bob come in.
    for viewer in (alice, bob):
        presence = viewer.page.get_by_role("list", name="In chat")
        await expect(presence.get_by_text("Alice", exact=True)).to_be_visible()
        await expect(presence.get_by_text("Bob", exact=True)).to_be_visible()
        await expect(viewer.page.locator("#presence-count")).to_have_text("2")
    await expect(alice.log.get_by_text("Bob joined")).to_be_visible()

    await alice.say("hi Bob!")  # Enter sends
    await bob.page.get_by_role("textbox", name="Message").fill("hello Alice")
    await bob.page.get_by_role("button", name="Send").click()
    for viewer in (alice, bob):
        await expect(viewer.log.locator("li.message")).to_have_count(2)
        assert await viewer.messages() == ["hi Bob!", "hello Alice"]
        authors = await viewer.log.locator("li.message .author").all_text_contents()
        assert authors == ["Alice", "Bob"]
    # Sent: the box is empty again and its counter back to zero.
    await expect(bob.page.get_by_role("textbox", name="Message")).to_have_value("")
    await expect(bob.page.locator("#counter")).to_have_text("0/500")
    await alice.screenshot("room-desktop")

    # Bob leaves: Alice sees it, and her presence list shrinks.
    await bob.page.get_by_role("link", name="← Streamers").click()
    await expect(alice.log.get_by_text("Bob left")).to_be_visible()
    await expect(alice.page.locator("#presence-count")).to_have_text("1")

    for viewer in (alice, bob):
        assert viewer.errors == []
        assert viewer.dialogs == []


async def test_reload_keeps_the_session_the_room_and_its_history(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server)
    alice = await in_room(viewers, streamer, "1001", "Alice")
    for text in ("one", "two", "three"):
        await alice.say(text)
    await expect(alice.log.locator("li.message")).to_have_count(3)

    await alice.page.reload()
    await expect(alice.page.get_by_role("heading", level=1)).to_have_text(streamer["display_name"])
    await expect(alice.page.get_by_role("button", name="Log out")).to_be_visible()
    await expect(alice.log.locator("li.message")).to_have_count(3)
    assert await alice.messages() == ["one", "two", "three"]

    # A link shared with someone else opens the same room, readable without logging in.
    guest = await viewers()
    await guest.open(f"/#/{streamer['login']}")
    await expect(guest.log.locator("li.message")).to_have_count(3)
    await expect(guest.page.get_by_role("button", name="Log in")).to_be_visible()

    # Logging out ends the session: the page offers the login form, and Alice is gone
    # from the room (her socket came back anonymous).
    await alice.page.get_by_role("button", name="Log out").click()
    await expect(alice.page.get_by_role("button", name="Log in")).to_be_visible()
    await alice.connected()
    await expect(guest.page.locator("#presence-count")).to_have_text("0")
    await alice.page.reload()
    await expect(alice.page.get_by_role("button", name="Log in")).to_be_visible()


async def test_a_viewer_offline_for_a_while_sees_every_message_once_in_order(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server)
    alice = await in_room(viewers, streamer, "1001", "Alice")
    bob = await in_room(viewers, streamer, "1002", "Bob")
    await alice.say("before")
    await expect(bob.log.locator("li.message")).to_have_count(1)

    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await expect(bob.page.locator("#connection")).to_contain_text("Offline")
    # Bob's server side has gone: Alice sees him leave.
    await expect(alice.log.get_by_text("Bob left")).to_be_visible()
    sent = [f"while away {i}" for i in range(12)]
    for text in sent:
        await alice.say(text)
    await expect(alice.log.locator("li.message")).to_have_count(13)

    # What Bob types meanwhile waits for the connection, and is sent once.
    await bob.say("typed offline")
    await expect(bob.page.get_by_role("textbox", name="Message")).to_have_value("")

    await bob.context.set_offline(False)
    await bob.connected()
    await expect(bob.log.locator("li.message")).to_have_count(14)
    await alice.say("after")
    for viewer in (alice, bob):
        await expect(viewer.log.locator("li.message")).to_have_count(15)
        assert await viewer.messages() == ["before", *sent, "typed offline", "after"]
        assert await viewer.seqs() == list(range(1, 16))
    assert bob.errors == []


async def test_a_server_restart_loses_nothing(browser: Any, tmp_path: Path) -> None:
    """The server goes away under Bob's page and comes back; Alice chats meanwhile."""
    settings = web_settings(tmp_path)
    sock = reserve_port()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with viewers_of(browser, url) as viewers:
        async with live_server(settings, sock) as server:
            streamer = await a_streamer(server)
            bob = await in_room(viewers, streamer, "1002", "Bob")
            token = await login(url, "1001", display_name="Alice")
            async with ChatClient.connect(url, token) as alice:
                await alice.publish(streamer["login"], "first")
            await expect(bob.log.locator("li.message")).to_have_count(1)
        await expect(bob.page.locator("#connection")).not_to_have_attribute("data-state", "open")

        again = socket.socket()
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        async with live_server(settings, again):
            texts = [f"during {i}" for i in range(20)]
            # The session lives in the database: it outlasts the process.
            async with ChatClient.connect(url, token) as alice:
                for text in texts:
                    await alice.publish(streamer["login"], text)
            await bob.connected()
            await expect(bob.log.locator("li.message")).to_have_count(21)
            assert await bob.messages() == ["first", *texts]
            assert await bob.seqs() == list(range(1, 22))


async def test_markup_in_a_message_is_shown_as_text(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server)
    alice = await in_room(viewers, streamer, "1001", "Alice")
    bob = await in_room(viewers, streamer, "1002", "<b>Bob</b>")
    attack = "<img src=x onerror=alert(1)>"
    await alice.say(attack)
    await bob.say("<script>alert(2)</script>")
    for viewer in (alice, bob):
        await expect(viewer.log.locator("li.message")).to_have_count(2)
        assert await viewer.messages() == [attack, "<script>alert(2)</script>"]
        assert await viewer.log.locator("img, script, b").count() == 0
        assert await viewer.page.get_by_role("list", name="In chat").locator("b").count() == 0
        await expect(viewer.log.get_by_text("<b>Bob</b>", exact=True)).to_be_visible()
        assert viewer.dialogs == []
    # Nothing tried to load "x" either.
    assert not [r.url for r in alice.requests + bob.requests if r.url.endswith("/x")]


async def test_a_stream_going_live_updates_the_directory_without_a_reload(
    browser: Any, tmp_path: Path
) -> None:
    settings = web_settings(
        tmp_path, run_singletons=True, admin_token=ADMIN_TOKEN, watch_interval=3600.0
    )
    async with (
        live_server(settings) as server,
        viewers_of(browser, server.url) as viewers,
        httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http,
    ):
        # The watcher's own look at the (sample) streams first; it looks again in an hour.
        reply = await http.post(
            "/api/admin/actors/stream-watcher/commands", json={"command": "refresh"}
        )
        assert reply.status_code == 200, reply.text
        streamer = await a_streamer(server, live=False)
        name = streamer["display_name"]
        directory, inside = await viewers(), await viewers()
        await directory.open()
        await inside.open(f"/#/{streamer['login']}")
        await directory.connected()
        await inside.connected()
        item = directory.page.locator("#streamers > li").filter(
            has=directory.page.get_by_role("link", name=name, exact=True)
        )
        await expect(item.locator(".badge")).to_have_text("Offline")
        await directory.page.evaluate("window.notReloaded = true")
        reply = await http.post(
            "/api/admin/actors/stream-watcher/commands",
            json={
                "command": "stream_event",
                "args": {
                    "broadcaster_id": streamer["id"],
                    "kind": "stream.online",
                    "started_at": "2026-11-30T10:00:00Z",
                },
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["reply"]["changed"][0]["kind"] == "stream.online"
        await expect(item.locator(".badge")).to_have_text("Live")
        await expect(item.locator(".meta")).to_contain_text("viewers")
        # Live streamers come before offline ones.
        first_offline = await directory.page.locator(
            "#streamers > li:not(.is-live)"
        ).first.get_attribute("data-id")
        assert first_offline != streamer["id"]
        # In the room: a notice and the header's badge.
        await expect(inside.log.get_by_text(f"{name} is live")).to_be_visible()
        await expect(inside.page.locator("#room-stream .badge")).to_have_text("Live")

        reply = await http.post(
            "/api/admin/actors/stream-watcher/commands",
            json={
                "command": "stream_event",
                "args": {
                    "broadcaster_id": streamer["id"],
                    "kind": "channel.update",
                    "title": "speedrun any%",
                },
            },
        )
        assert reply.status_code == 200, reply.text
        await expect(item.locator(".title")).to_have_text("speedrun any%")
        await expect(inside.page.locator("#room-stream .title")).to_have_text("speedrun any%")

        await http.post(
            "/api/admin/actors/stream-watcher/commands",
            json={
                "command": "stream_event",
                "args": {"broadcaster_id": streamer["id"], "kind": "stream.offline"},
            },
        )
        await expect(item.locator(".badge")).to_have_text("Offline")
        await expect(inside.log.get_by_text(f"{name} went offline")).to_be_visible()
        assert await directory.page.evaluate("window.notReloaded") is True


async def test_errors_are_shown_inline(viewers: ViewerFactory, server: LiveServer) -> None:
    streamer = await a_streamer(server)
    page_of = await viewers()
    await page_of.open(f"/#/{streamer['login']}")
    await page_of.connected()
    page = page_of.page
    box = page.get_by_role("textbox", name="Message")
    error = page.locator("#send-error")

    # Not logged in.
    await page_of.say("hello?")
    await expect(error).to_contain_text("not logged in")
    await page_of.log_in("1001", "Alice")
    await expect(page.locator("#room-status")).to_have_text("")

    # Too long: the counter says so, the error says so, nothing is sent.
    await box.fill("é" * 501)
    await expect(page.locator("#counter")).to_have_text("501/500")
    await expect(error).to_contain_text("Too long")
    await box.press("Enter")
    await expect(box).to_have_value("é" * 501)
    # Emoji are one character each, as the server counts them.
    await box.fill("🎉" * 500)
    await expect(page.locator("#counter")).to_have_text("500/500")
    await expect(error).to_have_text("")
    await box.press("Enter")
    await expect(page_of.log.locator("li.message")).to_have_count(1)

    # Rate limited: 20 messages per 30 s; the 21st waits, and the page says how long.
    for i in range(19):
        await page_of.say(f"message {i}")
    await expect(page_of.log.locator("li.message")).to_have_count(20)
    await page_of.say("one too many")
    await expect(error).to_contain_text("Rate limited")
    await expect(error).to_contain_text(" s")
    await expect(box).to_have_value("one too many")  # kept, to send later
    assert await page_of.messages() == ["🎉" * 500, *[f"message {i}" for i in range(19)]]


async def test_scrolling_up_loads_older_messages(
    viewers: ViewerFactory, tmp_path: Path, browser: Any
) -> None:
    async with live_server(web_settings(tmp_path, rate_limit=False)) as server:
        streamer = await a_streamer(server)
        token = await login(server.url, "1001", display_name="Alice")
        async with ChatClient.connect(server.url, token) as alice:
            for i in range(1, 131):
                await alice.publish(streamer["login"], f"line {i}")
        async with viewers_of(browser, server.url) as make:
            reader = await make()
            await reader.open(f"/#/{streamer['login']}")
            await expect(reader.log.locator("li.message")).to_have_count(50)
            assert (await reader.seqs())[0] == 81
            # At the bottom: the newest line is in view.
            await expect(reader.log.get_by_text("line 130", exact=True)).to_be_in_viewport()
            for shown in (100, 130):
                await reader.log.evaluate("log => { log.scrollTop = 0; }")
                await expect(reader.log.locator("li.message")).to_have_count(shown)
            assert await reader.seqs() == list(range(1, 131))
            assert await reader.messages() == [f"line {i}" for i in range(1, 131)]


async def test_phone_width_and_keyboard_only(viewers: ViewerFactory, server: LiveServer) -> None:
    streamer = await a_streamer(server)
    viewer = await viewers(viewport=PHONE)
    page = viewer.page
    await viewer.open()
    no_sideways_scroll = "document.scrollingElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(no_sideways_scroll)

    # Tab to the Twitch ID field, type, Enter logs in.
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "twitch-id":
            break
    else:
        pytest.fail("Tab never reached the Twitch ID field")
    await page.keyboard.type("1001")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Alice")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await viewer.connected()
    await viewer.screenshot("directory-phone")

    # Tab to the streamer's favourite button and press it; then to its link.
    name = streamer["display_name"]
    star = page.get_by_role("button", name=f"Favourite {name}")
    link = page.get_by_role("link", name=name, exact=True)
    for target in (star, link):
        for _ in range(200):
            await page.keyboard.press("Tab")
            if await target.evaluate("node => node === document.activeElement"):
                break
        else:
            pytest.fail(f"Tab never reached {target}")
        await page.keyboard.press("Enter")
        if target is star:
            await expect(star).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await expect(page.locator("#room-status")).to_have_text("")

    box = page.get_by_role("textbox", name="Message")
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await box.evaluate("node => node === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the message box")
    await page.keyboard.type("typed on a phone")
    await page.keyboard.press("Enter")
    await expect(viewer.log.get_by_text("typed on a phone")).to_be_visible()
    assert await page.evaluate(no_sideways_scroll)
    await viewer.screenshot("room-phone")


async def test_the_page_talks_to_its_own_origin_only(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server)
    viewer = await in_room(viewers, streamer, "1001", "Alice")
    await viewer.say("hello")
    await expect(viewer.log.locator("li.message")).to_have_count(1)
    await viewer.page.get_by_role("link", name="← Streamers").click()
    assert viewer.requests
    foreign = [r.url for r in viewer.requests if not r.url.startswith(server.url + "/")]
    assert foreign == []
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert viewer.errors == []


async def test_a_session_ended_elsewhere_logs_the_page_out(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await a_streamer(server)
    viewer = await in_room(viewers, streamer, "1001", "Alice")
    cookies = await viewer.context.cookies()
    token = next(c["value"] for c in cookies if c["name"] == "streamchat_session")
    async with httpx.AsyncClient(
        base_url=server.url, cookies={"streamchat_session": token}
    ) as http:
        assert (await http.post("/api/logout")).status_code == 204
    await expect(viewer.page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(viewer.page.locator("#login-error")).to_contain_text("session ended")
    await viewer.connected()
    await viewer.say("still here?")
    await expect(viewer.page.locator("#send-error")).to_contain_text("not logged in")
    await wait_for(lambda: len(server.services.connections) == 1, what="the page reconnected")


async def test_an_unknown_room_says_so(viewers: ViewerFactory, server: LiveServer) -> None:
    viewer = await viewers()
    await viewer.open("/#/nobody_here")
    await expect(viewer.page.locator("#room-status")).to_contain_text(
        "no streamer named nobody_here"
    )
    await expect(viewer.page.get_by_role("button", name="Send")).to_be_disabled()
