"""The web client in a real browser: Debian's chromium, driven by Playwright.

Playwright cannot download its own browsers here; it drives the system's
``chromium`` (``executable_path``). In CI a missing browser fails the tests
(``.ci/run`` installs it); elsewhere they are skipped and the run says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright, expect

from streamchat.config import Settings
from tests.conftest import IN_CI, _unavailable
from tests.ws.conftest import LiveServer, live_server

CHROMIUM = os.environ.get("STREAMCHAT_TEST_CHROMIUM") or shutil.which("chromium")

#: Screenshots the tests take, kept for people to look at (CI keeps build/).
ARTIFACTS = Path(os.environ.get("STREAMCHAT_TEST_ARTIFACTS", "build/test-artifacts")) / "web"

# As root in a container: no sandbox; and no calls home, which this network refuses.
_CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

expect.set_options(timeout=10_000)


def require_browser() -> str:
    if CHROMIUM and Path(CHROMIUM).exists():
        return CHROMIUM
    reason = "chromium is not installed (apt-get install chromium)"
    if IN_CI:
        pytest.fail(f"{reason}; CI requires it", pytrace=False)
    _unavailable["chromium"] = reason
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=_CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def web_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", run_singletons=False
    ).model_copy(update=overrides)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(web_settings(tmp_path)) as server:
        yield server


@dataclass
class Viewer:
    """One person in their own browser context: cookies, storage and network of their own."""

    context: BrowserContext
    page: Page
    base_url: str
    #: Every request the page made, and every error it raised.
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def open(self, path: str = "/") -> None:
        await self.page.goto(self.base_url + path)
        await expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    async def log_in(self, twitch_id: str, display_name: str = "") -> None:
        page = self.page
        await page.get_by_label("Twitch ID").fill(twitch_id)
        if display_name:
            await page.get_by_label("Display name").fill(display_name)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("button", name="Log out")).to_be_visible()
        await self.connected()

    async def connected(self) -> None:
        await expect(self.page.locator("#connection")).to_have_attribute("data-state", "open")

    async def open_room(self, display_name: str) -> None:
        await self.page.get_by_role("link", name=display_name, exact=True).click()
        await expect(self.page.get_by_role("heading", level=1)).to_have_text(display_name)
        # Subscribed: the presence count has been read.
        await expect(self.page.locator("#room-status")).to_have_text("")

    async def say(self, text: str) -> None:
        box = self.page.get_by_role("textbox", name="Message")
        await box.fill(text)
        await box.press("Enter")

    @property
    def log(self) -> Any:
        return self.page.get_by_role("log")

    async def messages(self) -> list[str]:
        """The text of every chat message shown, in order."""
        texts: list[str] = await self.log.locator("li.message .text").all_text_contents()
        return texts

    async def seqs(self) -> list[int]:
        values = await self.log.locator("li.message").evaluate_all(
            "items => items.map(item => Number(item.dataset.seq))"
        )
        return [int(v) for v in values]

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path


ViewerFactory = Callable[..., Awaitable[Viewer]]


@asynccontextmanager
async def viewers_of(browser: Browser, base_url: str) -> AsyncIterator[ViewerFactory]:
    contexts: list[BrowserContext] = []

    async def new_viewer(viewport: dict[str, int] | None = None, **options: Any) -> Viewer:
        context = await browser.new_context(viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        page = await context.new_page()
        viewer = Viewer(context, page, base_url)
        page.on("request", lambda request: viewer.requests.append(request))
        page.on("pageerror", lambda error: viewer.errors.append(str(error)))
        page.on(
            "console",
            lambda message: viewer.errors.append(message.text) if message.type == "error" else None,
        )

        async def on_dialog(dialog: Any) -> None:
            viewer.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        return viewer

    try:
        yield new_viewer
    finally:
        for context in contexts:
            await context.close()


@pytest.fixture
async def viewers(browser: Browser, server: LiveServer) -> AsyncIterator[ViewerFactory]:
    async with viewers_of(browser, server.url) as factory:
        yield factory
