"""Logging in with Twitch from the page: the browser's whole round trip through the fake
Twitch (a real redirect to another origin and back), then chatting as that user."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.twitch.fake import fake_twitch_server
from tests.twitch.test_login import twitch_settings
from tests.web.conftest import viewers_of
from tests.ws._process import reserve_port
from tests.ws.conftest import live_server


async def test_log_in_with_twitch_then_chat(browser: Browser, tmp_path: Path) -> None:
    sock = reserve_port()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with fake_twitch_server(redirect_uris=[f"{url}/auth/twitch/callback"]) as twitch:
        mira = twitch.add_user("MiraMoon", user_id="90210")
        twitch.log_in_as(mira.id)
        settings = twitch_settings(twitch, tmp_path, public_url=url)
        async with live_server(settings, sock), viewers_of(browser, url) as viewers:
            viewer = await viewers()
            page = viewer.page
            await viewer.open()
            # No ID to type in this mode: Twitch says who you are.
            await expect(page.get_by_label("Twitch ID")).to_be_hidden()
            await page.get_by_role("link", name="Log in with Twitch").click()
            await expect(page.get_by_text("Logged in as MiraMoon")).to_be_visible()
            assert page.url == f"{url}/"
            await viewer.connected()
            await viewer.open_room("PixelPaladin")
            await viewer.say("hello from Twitch")
            await expect(viewer.log.locator("li.message .author")).to_have_text(["MiraMoon"])
            await expect(viewer.log.locator("li.message .text")).to_have_text(["hello from Twitch"])

            # Refused consent comes back to the page as an error, not as a session.
            await page.get_by_role("button", name="Log out").click()
            twitch.deny_consent()
            await page.get_by_role("link", name="Log in with Twitch").click()
            await expect(page.get_by_role("alert")).to_have_text(
                "You declined to log in with Twitch."
            )
            assert page.url == f"{url}/"
            await expect(page.get_by_role("link", name="Log in with Twitch")).to_be_visible()
            await expect(page.get_by_role("button", name="Log out")).to_be_hidden()
