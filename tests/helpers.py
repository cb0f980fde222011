"""What many tests need: a chat client's next messages, or none for a while; and a wait for
a condition that fails with a message once its deadline passes, instead of a fixed sleep."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from streamchat.client import ChatClient, Message

__all__ = ["messages", "next_message", "no_more_messages", "wait_for"]

T = TypeVar("T")


@overload
async def wait_for(
    condition: Callable[[], Awaitable[T | None]],
    within: float = ...,
    interval: float = ...,
    *,
    what: str | None = ...,
) -> T: ...


@overload
async def wait_for(
    condition: Callable[[], T | None],
    within: float = ...,
    interval: float = ...,
    *,
    what: str | None = ...,
) -> T: ...


async def wait_for(
    condition: Callable[[], Any],
    within: float = 10.0,
    interval: float = 0.01,
    *,
    what: str | None = None,
) -> Any:
    """Poll ``condition`` (a function, or a coroutine function) every ``interval`` seconds
    until it returns something true, and return that; TimeoutError naming ``what`` (or the
    condition) once ``within`` seconds have passed."""
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise  # the condition's own
        name = what or getattr(condition, "__qualname__", repr(condition))
        raise TimeoutError(f"not true within {within:g} s: {name}") from None


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
