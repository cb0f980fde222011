"""Moderating from the page: the broadcaster's tools on each message, and what viewers see."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import ViewerFactory
from tests.ws.conftest import LiveServer

ROOM = "pixelpaladin"


async def test_the_broadcaster_deletes_and_bans_from_the_page(
    viewers: ViewerFactory, server: LiveServer
) -> None:
    streamer = await server.services.streamers.find(ROOM)
    assert streamer is not None
    host, vic = await viewers(), await viewers()
    for viewer, twitch_id, name in ((host, streamer.id, "Pixel"), (vic, "3001", "Vic")):
        await viewer.open(f"/#/{ROOM}")
        await viewer.log_in(twitch_id, name)
        await expect(viewer.page.locator("#room-status")).to_have_text("")
    # The viewer has no tools; the broadcaster has them on others' messages only.
    await vic.say("first")
    await vic.say("second")
    await host.say("welcome")
    for viewer in (host, vic):
        await expect(viewer.log.locator("li.message")).to_have_count(3)
    assert await vic.log.get_by_role("button").count() == 0
    delete = host.page.get_by_role("button", name="Delete message from Vic")
    await expect(delete).to_have_count(2)
    await expect(host.page.get_by_role("button", name="Delete message from Pixel")).to_have_count(0)

    await delete.first.click()
    for viewer in (host, vic):
        await expect(viewer.log.locator("li.message.deleted")).to_have_count(1)
        await expect(viewer.log.locator("li.message.deleted")).to_have_text("Message deleted")
        assert await viewer.messages() == ["Message deleted", "second", "welcome"]

    await host.page.get_by_role("button", name="Ban Vic").first.click()
    for viewer in (host, vic):
        await expect(viewer.log.get_by_text("Vic was banned by Pixel.")).to_be_visible()
        await expect(viewer.log.locator("li.message.deleted")).to_have_count(2)
    await vic.say("let me back in")
    await expect(vic.page.locator("#send-error")).to_have_text("You are banned from this room.")
    assert vic.errors == []
    assert host.errors == []
