"""`streamchat chat`: a real terminal session against a real server."""

from __future__ import annotations

import asyncio
import os
import sys

from streamchat.client import ChatClient, login
from tests.ws.conftest import ROOM, ServerFactory, chat_settings, server_factory

__all__ = ["chat_settings", "server_factory"]  # the live-server fixtures, used here too


async def test_chat_shows_the_room_and_sends_what_is_typed(server_factory: ServerFactory) -> None:
    async with server_factory() as server:
        other = await login(server.url, "2002", "bob")
        async with ChatClient.connect(server.url, other) as bob:
            await bob.publish(ROOM, "earlier message from bob")
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamchat",
                "chat",
                ROOM,
                "--twitch-id",
                "2001",
                "--login",
                "alice",
                "--url",
                server.url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
            )
            assert process.stdin is not None
            await bob.subscribe(ROOM)
            process.stdin.write(b"hello from the terminal\n")
            await process.stdin.drain()
            async with asyncio.timeout(15):
                while True:
                    event = await bob.next_event(15)
                    if getattr(event, "text", None) == "hello from the terminal":
                        break
            assert event.user.login == "alice"  # type: ignore[union-attr]
            await bob.publish(ROOM, "welcome, alice")
            # The screen shows history, then the room live, own lines included.
            assert process.stdout is not None
            seen: list[str] = []
            async with asyncio.timeout(15):
                while not any("welcome, alice" in line for line in seen):
                    seen.append((await process.stdout.readline()).decode())
            screen = "".join(seen)
            assert "earlier message from bob" in screen
            assert "alice: hello from the terminal" in screen
            process.stdin.write(b"/quit\n")
            await process.stdin.drain()
            output, _ = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, output.decode()
