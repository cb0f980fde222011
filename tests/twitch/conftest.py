"""The fake Twitch, running, for the tests of this package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.twitch.fake import FakeTwitch, fake_twitch_server


@pytest.fixture
async def fake_twitch() -> AsyncIterator[FakeTwitch]:
    async with fake_twitch_server() as fake:
        yield fake
