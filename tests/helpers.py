"""What many tests need of a chat client: its next messages, or none for a while."""

from __future__ import annotations

import asyncio
import contextlib

from streamchat.client import ChatClient, Message

__all__ = ["messages", "next_message", "no_more_messages"]


async def messages(chat: ChatClient, count: int, within: float = 10.0) -> list[Message]:
    """The next ``count`` chat messages (join/leave notices and events skipped), failing
    after ``within`` seconds."""
    out: list[Message] = []
    async with asyncio.timeout(within):
        while len(out) < count:
            event = await chat.next_event(None)
            if isinstance(event, Message):
                out.append(event)
    return out


async def next_message(chat: ChatClient, within: float = 5.0) -> Message:
    """The next chat message, skipping join/leave notices and events."""
    [message] = await messages(chat, 1, within)
    return message


async def no_more_messages(chat: ChatClient, within: float = 1.0) -> list[Message]:
    """The chat messages that arrive within ``within`` seconds: a test expects none."""
    extra: list[Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                event = await chat.next_event(None)
                if isinstance(event, Message):
                    extra.append(event)
    return extra
