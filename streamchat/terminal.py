"""``streamchat chat <room>``: one chat room, live, in the terminal.

The last 20 messages come first, then live messages, joins, leaves and room
events. Each line typed is sent as a message; ``/who`` lists who is in the room
and ``/quit`` (or the end of input) leaves once what was typed has been sent.

A lost connection is re-established with capped exponential backoff and the
room resumed with ``since``, so no message is missed or shown twice. A line
being sent when the connection dropped is sent again after reconnecting with
the same nonce, so it is stored once even if the first attempt got through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import unicodedata
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TextIO

import httpx
from rich.console import Console
from rich.text import Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from streamchat.backoff import Backoff
from streamchat.client import ChatClient, ChatError, EventsDropped, Message, login
from streamchat.protocol import (
    ErrorFrame,
    EventFrame,
    Join,
    Leave,
    ModerationNotice,
    RoomState,
    StreamerChange,
    UserRef,
)

__all__ = ["HISTORY_LINES", "TerminalChat", "run_chat"]

#: Messages shown when entering the room.
HISTORY_LINES: Final = 20
#: How long ``/quit`` waits for typed lines to be acknowledged.
QUIT_GRACE: Final = 5.0
#: Waits between reconnection attempts.
_RECONNECT = Backoff(first=0.5, cap=10.0)
_SEND_ATTEMPTS: Final = 3
_NAME_STYLES: Final = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
    "bright_red",
)
#: Close codes after which reconnecting cannot help.
_FINAL_CLOSES: Final = {
    1008: "the server closed the connection after too many errors",
    1009: "the server refused a frame that was too large",
    4001: "your session ended (logged out)",
    4003: "the server refused this origin",
}
_COMMANDS: Final = "/who lists who is here, /quit leaves, //text sends a line starting with /"


def run_chat(
    base_url: str,
    room: str,
    twitch_id: str,
    login: str | None,
    since: int | None,
    *,
    display_name: str | None = None,
    console: Console | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Chat in ``room`` until ``/quit`` or end of input; return the process exit code.

    0 after leaving normally, 1 when logging in, joining or staying connected
    failed (or typed lines could not be sent), 130 on Ctrl-C.
    """
    chat = TerminalChat(
        base_url,
        room,
        twitch_id=twitch_id,
        login=login,
        display_name=display_name,
        since=since,
        console=console,
        stdin=stdin,
    )
    try:
        return asyncio.run(chat.run())
    except KeyboardInterrupt:
        return 130


@dataclass(frozen=True, slots=True)
class _Line:
    """A typed line to publish; the nonce makes sending it again harmless."""

    text: str
    nonce: str


class TerminalChat:
    """The state of one ``streamchat chat`` session: the room, what was shown, what to send."""

    def __init__(
        self,
        base_url: str,
        room: str,
        *,
        twitch_id: str,
        login: str | None = None,
        display_name: str | None = None,
        since: int | None = None,
        console: Console | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.base_url = base_url
        self.room = room
        self._twitch_id = twitch_id
        self._login = login
        self._display_name = display_name
        self._console = console or Console(highlight=False)
        self._stdin = stdin or sys.stdin
        #: The last seq shown; live frames at or below it are duplicates.
        self._last_seq = since
        self._epoch: str | None = None
        self._chat: ChatClient | None = None
        #: Set once the room was first entered: input waits for it, so that a
        #: piped ``/who`` or message is not handled before there is a room.
        self._joined = asyncio.Event()
        self._outbox: asyncio.Queue[_Line] = asyncio.Queue(maxsize=100)
        #: The line being published; kept across a reconnect until acknowledged.
        self._sending: _Line | None = None

    async def run(self) -> int:
        try:
            token = await login(
                self.base_url, self._twitch_id, self._login, display_name=self._display_name
            )
        except (ChatError, httpx.HTTPError, ValueError) as exc:
            self._problem(f"could not log in at {self.base_url}: {exc}")
            return 1
        lines = _read_lines(self._stdin, asyncio.get_running_loop())
        connection = asyncio.create_task(self._stay_connected(token), name="chat-connection")
        typing = asyncio.create_task(self._take_input(lines), name="chat-input")
        try:
            done, _ = await asyncio.wait({connection, typing}, return_when=asyncio.FIRST_COMPLETED)
            return (typing if typing in done else connection).result()
        finally:
            for task in (connection, typing):
                task.cancel()
            await asyncio.gather(connection, typing, return_exceptions=True)

    # -- the connection ----------------------------------------------------------------

    async def _stay_connected(self, token: str) -> int:
        """Connect, resume the room, show it; reconnect until something final happens."""
        failures = 0
        while True:
            code: int | None = None
            try:
                async with ChatClient.connect(self.base_url, token) as chat:
                    await self._enter(chat, note="reconnected" if failures else None)
                    self._joined.set()
                    failures = 0
                    self._chat = chat
                    try:
                        await self._converse(chat)
                    finally:
                        self._chat = None
                code = chat.close_code
                why = f"closed {code}" + (f": {chat.close_reason}" if chat.close_reason else "")
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                why = f"closed {code}"
            except ChatError as exc:
                if exc.code != "unavailable":
                    self._problem(f"cannot join #{self.room}: {exc.reason} ({exc.code})")
                    return 1
                why = exc.reason
            except InvalidStatus as exc:
                if exc.response.status_code < 500:
                    self._problem(f"the server refused the connection: {exc}")
                    return 1
                why = str(exc)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                why = str(exc) or type(exc).__name__
            if code in _FINAL_CLOSES:
                self._problem(_FINAL_CLOSES[code])
                return 1
            failures += 1
            delay = _RECONNECT.delay(failures)
            self._notice(f"disconnected ({why}); reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _enter(self, chat: ChatClient, *, note: str | None = None) -> None:
        """Subscribe, resuming after the last message shown, or show recent history."""
        since = self._last_seq
        sub = await chat.subscribe(self.room, since=since, epoch=self._epoch)
        if note is not None:
            self._notice(note)
        elif not self._joined.is_set():
            self._notice(f"joined #{self.room} — {_COMMANDS}")
        if self._epoch is not None and sub.epoch != self._epoch:
            self._notice("the server lost its chat history in the meantime")
        elif since is not None and not sub.recovered:
            self._notice("some messages could not be recovered; showing the latest")
        self._epoch = sub.epoch
        if since is not None and sub.recovered:
            return  # the messages after `since` are on their way as events
        # Everything up to sub.seq comes from history, everything after from events.
        self._last_seq = None
        if sub.seq > 0:
            for message in await chat.history(self.room, before=sub.seq + 1, limit=HISTORY_LINES):
                self._show(message)
        self._last_seq = sub.seq

    async def _converse(self, chat: ChatClient) -> None:
        """Show events and send typed lines until the connection ends."""
        shower = asyncio.create_task(self._show_events(chat), name="chat-events")
        sender = asyncio.create_task(self._send_lines(chat), name="chat-sender")
        try:
            done, _ = await asyncio.wait({shower, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                sender.result()  # raises what went wrong, if anything
                await shower  # the connection closed: show what had arrived
        finally:
            for task in (shower, sender):
                task.cancel()
            await asyncio.gather(shower, sender, return_exceptions=True)

    async def _show_events(self, chat: ChatClient) -> None:
        async for event in chat.events():
            if isinstance(event, EventsDropped):
                # The client's queue overflowed: subscribing again replays what was lost.
                await self._enter(chat, note="fell behind; catching up")
            elif isinstance(event, ModerationNotice):
                self._moderation(event)
            elif not isinstance(event, StreamerChange | RoomState):
                self._show(event)

    async def _send_lines(self, chat: ChatClient) -> None:
        while True:
            if self._sending is None:
                self._sending = await self._outbox.get()
            line = self._sending
            for attempt in range(1, _SEND_ATTEMPTS + 1):
                try:
                    await chat.publish(self.room, line.text, nonce=line.nonce)
                except ChatError as exc:
                    self._problem(f"not sent ({exc.code}): {exc.reason}")
                except TimeoutError:
                    if attempt < _SEND_ATTEMPTS:
                        continue  # the same nonce: stored at most once
                    self._problem(f"no acknowledgement, perhaps not sent: {line.text}")
                except ConnectionClosed:
                    await chat.wait_closed()
                    return  # kept in self._sending: sent again after reconnecting
                break
            self._sending = None
            self._outbox.task_done()

    # -- input -------------------------------------------------------------------------

    async def _take_input(self, lines: asyncio.Queue[str | None]) -> int:
        """Handle typed lines until ``/quit`` or end of input; return the exit code."""
        await self._joined.wait()
        while (raw := await lines.get()) is not None:
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            if text.startswith("//"):
                text = text[1:]
            elif text.startswith("/"):
                command = text.split()[0].lower()
                if command in ("/quit", "/exit", "/q"):
                    break
                if command == "/who":
                    await self._who()
                else:
                    self._notice(f"unknown command {command}: {_COMMANDS}")
                continue
            await self._outbox.put(_Line(text, uuid.uuid4().hex))
        return await self._leave()

    async def _leave(self) -> int:
        """Give typed lines a moment to be sent, then report those that were not."""
        try:
            async with asyncio.timeout(QUIT_GRACE):
                await self._outbox.join()
        except TimeoutError:
            unsent = self._outbox.qsize() + (self._sending is not None)
            self._problem(f"{unsent} message(s) not sent")
            return 1
        return 0

    async def _who(self) -> None:
        chat = self._chat
        if chat is None:
            self._notice("not connected right now")
            return
        try:
            presence = await chat.presence(self.room)
        except (ChatError, TimeoutError, ConnectionClosed) as exc:
            self._problem(f"/who failed: {exc}")
            return
        line = Text()
        line.append(f"{presence.count} in #{self.room}", style="dim")
        for index, user in enumerate(presence.users):
            line.append(": " if index == 0 else ", ", style="dim")
            line.append(_name(user), style=_name_style(user))
        self._console.print(line)

    # -- output ------------------------------------------------------------------------

    def _show(self, event: Message | Join | Leave | EventFrame | ErrorFrame) -> None:
        if isinstance(event, ErrorFrame):
            self._problem(f"{event.reason} ({event.code})")
        elif event.room != self.room:
            return
        elif isinstance(event, Message):
            if self._last_seq is not None and event.seq <= self._last_seq:
                return  # already shown (history and live overlap, or a replay)
            self._last_seq = event.seq
            if event.deleted or event.user is None:
                self._console.print(Text(f"· message {event.seq} was deleted", style="dim"))
                return
            line = Text()
            line.append(_clock(event.ts) + " ", style="dim")
            line.append(_name(event.user), style=f"bold {_name_style(event.user)}")
            line.append(": " + _printable(event.text))
            self._console.print(line)
        elif isinstance(event, Join | Leave):
            arrow, verb = ("→", "joined") if isinstance(event, Join) else ("←", "left")
            line = Text(f"{arrow} ", style="dim")
            line.append(_name(event.user), style=_name_style(event.user))
            line.append(f" {verb}", style="dim")
            self._console.print(line)
        else:
            details = ", ".join(f"{key}={value}" for key, value in event.data.items())
            text = f"★ {event.kind}" + (f": {details}" if details else "")
            self._console.print(Text(_printable(text), style="yellow"))

    def _moderation(self, event: ModerationNotice) -> None:
        if event.room != self.room:
            return
        who = f" {_name(event.user)}" if event.user is not None else ""
        how = f" ({event.seconds} s)" if event.seconds is not None else ""
        self._notice(f"{_name(event.by)}: {event.action}{who}{how}")

    def _notice(self, text: str) -> None:
        self._console.print(Text(f"· {text}", style="dim italic"))

    def _problem(self, text: str) -> None:
        self._console.print(Text(f"! {text}", style="bold red"))


def _read_lines(stream: TextIO, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of ``stream`` in a queue, ending with ``None``, read by a daemon thread.

    A thread rather than ``connect_read_pipe``: that needs a pipe or a terminal
    (not a redirected file) and would make a shared terminal non-blocking for
    output too. The thread is a daemon, so a pending ``readline`` never delays
    the exit; the bounded queue holds it back when input outruns sending.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=100)

    def hand_over(line: str | None) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(line), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return False  # the loop is gone: nobody is reading any more
        return True

    def pump() -> None:
        try:
            for line in iter(stream.readline, ""):
                if not hand_over(line):
                    return
        except (OSError, ValueError):
            pass  # the stream was closed under us: treat it as the end
        hand_over(None)

    threading.Thread(target=pump, name="streamchat-stdin", daemon=True).start()
    return queue


def _name(user: UserRef) -> str:
    return _printable(user.display_name or user.login or user.id)


def _name_style(user: UserRef) -> str:
    # crc32, not hash(): the colour of a name must not change between runs.
    return _NAME_STYLES[zlib.crc32(user.id.encode()) % len(_NAME_STYLES)]


def _clock(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000).strftime("%H:%M")


def _printable(text: str) -> str:
    """``text`` without what could drive the terminal: controls, escapes, bidi overrides."""
    return "".join("\ufffd" if _unsafe(char) else char for char in text)


def _unsafe(char: str) -> bool:
    if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
        return True
    return "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069"
