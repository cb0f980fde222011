"""The actor runtime: typed commands, bounded mailboxes, supervision, leadership.

An actor owns its state and does one thing at a time: handle a command from
its mailbox, or run its periodic :meth:`Actor.tick`. Each actor lives in an
:class:`ActorCell`, one task that

- takes commands from a bounded :class:`Mailbox` (a full mailbox is the
  sender's error, :class:`~streamchat.errors.MailboxFull`, never a growing queue);
- answers ``ask`` with the handler's reply, or its error;
- restarts the actor with a fresh instance when it crashes, after a capped
  exponential backoff, counting the restarts and keeping the last error;
- with a :class:`Lease`, runs the actor only while it holds the lease, so one
  instance is active across every process and the others wait in ``standby``;
- stops within a deadline, or is cancelled and says so.

An :class:`ActorSystem` holds the cells of one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol

import msgspec

from streamchat.backoff import Backoff
from streamchat.errors import (
    ActorCrashed,
    ActorTimeout,
    ActorUnavailable,
    InvalidCommand,
    MailboxFull,
    StreamchatError,
    UnknownActor,
)

__all__ = [
    "Actor",
    "ActorCell",
    "ActorInfo",
    "ActorState",
    "ActorSystem",
    "Broadcast",
    "Command",
    "Lease",
    "Mailbox",
    "Pause",
    "Resume",
    "parse_command",
]

log = logging.getLogger("streamchat.actors")

#: Waits before restarting an actor that crashed, reset once it has run healthy a while.
_RESTARTS = Backoff(first=0.5, cap=30.0, jitter=False)


class ActorState(enum.StrEnum):
    RUNNING = "running"
    #: Crashed; waiting out the backoff before the next start.
    RESTARTING = "restarting"
    #: Takes commands, but its periodic work is suspended.
    PAUSED = "paused"
    STOPPED = "stopped"
    #: Another process holds the actor's lease; this one waits to take over.
    STANDBY = "standby"


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every command; a subclass is one command, named by its ``tag``."""


class Pause(Command, tag="pause", frozen=True):
    """Suspend the actor's periodic work; commands are still handled."""


class Resume(Command, tag="resume", frozen=True):
    """Resume the actor's periodic work."""


class Broadcast(Command, tag="broadcast", frozen=True):
    """An operator's message to every actor."""

    #: Like a chat line: something to read, and no control characters.
    text: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=500,
            pattern="^(?=.*\\S)[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+$",
        ),
    ]


#: Commands every actor takes.
BUILTIN_COMMANDS: tuple[type[Command], ...] = (Pause, Resume, Broadcast)


class Actor:
    """Base of every actor. Subclasses set ``name`` and ``commands`` and override what they need.

    A new instance is made for every (re)start, so state does not survive a
    crash. ``interval`` (seconds) makes :meth:`tick` run that often; ``None``
    makes the actor purely command-driven.
    """

    name: ClassVar[str]
    #: The commands :meth:`handle` takes, besides the built-in pause, resume and broadcast.
    commands: ClassVar[tuple[type[Command], ...]] = ()
    interval: float | None = None

    async def on_start(self) -> None:
        """Called before the first tick or command of each (re)start."""

    async def tick(self) -> None:
        """The periodic work, every ``interval`` seconds while running."""

    async def handle(self, command: Command) -> object:
        """Handle one of ``commands``; return the reply (JSON-encodable)."""
        raise InvalidCommand(f"{self.name} does not handle {command_name(type(command))!r}")

    async def on_broadcast(self, text: str) -> object:
        """An operator's broadcast; by default it is logged."""
        log.info("actor %s received a broadcast: %s", self.name, text)
        return None

    async def on_stop(self) -> None:
        """Called once when the actor is stopped (not after a crash)."""


def command_name(command: type[Command]) -> str:
    tag = command.__struct_config__.tag
    assert isinstance(tag, str), f"{command.__name__} has no tag"
    return tag


def command_types(actor: type[Actor]) -> dict[str, type[Command]]:
    """Every command ``actor`` takes, by name."""
    return {command_name(cls): cls for cls in (*BUILTIN_COMMANDS, *actor.commands)}


def parse_command(actor: type[Actor], name: str, args: object) -> Command:
    """The typed command ``name`` of ``actor`` from ``args``; InvalidCommand if it can't be."""
    cls = command_types(actor).get(name)
    if cls is None:
        known = ", ".join(sorted(command_types(actor)))
        raise InvalidCommand(f"{actor.name} has no command {name!r}; it takes: {known}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise InvalidCommand("args must be a JSON object")
    try:
        return msgspec.convert(args, cls)
    except msgspec.ValidationError as exc:
        raise InvalidCommand(f"{actor.name} {name}: {exc}") from exc


class Lease(Protocol):
    """A claim, shared by every process, that only one holder can have at a time."""

    #: How long the claim lasts without a renewal, in seconds.
    ttl: float

    async def acquire(self) -> bool:
        """Take the lease, or renew it if it is ours; whether we hold it now."""

    async def release(self) -> None:
        """Give the lease up, if it is ours."""

    async def paused(self) -> bool:
        """Whether an operator paused the actor (it stays paused in every process)."""

    async def set_paused(self, paused: bool) -> None:
        """Record that the actor is paused, or no longer."""


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """What an operator sees of one actor in one process."""

    name: str
    state: ActorState
    mailbox: int
    restarts: int
    last_error: str | None
    last_error_at: float | None
    #: While ``restarting``: seconds until the next start.
    restart_in: float | None


# -- the mailbox -----------------------------------------------------------------------


class _Closed(Exception):
    """The mailbox was closed: the actor is stopping."""


@dataclass(slots=True)
class _Envelope:
    command: Command
    reply: asyncio.Future[object] | None


class Mailbox:
    """A bounded FIFO of commands with one reader."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a mailbox holds at least one command")
        self.size = size
        self._items: deque[_Envelope] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, envelope: _Envelope) -> None:
        if self.closed:
            raise ActorUnavailable("the actor is stopping")
        if len(self._items) >= self.size:
            raise MailboxFull(f"the mailbox is full ({self.size} commands waiting); retry later")
        self._items.append(envelope)
        self._wake()

    async def get(self, wait: float | None) -> _Envelope | None:
        """The next command; ``None`` after ``wait`` seconds; :class:`_Closed` once closed."""
        if self.closed:
            raise _Closed
        if not self._items:
            if wait is not None and wait <= 0:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if wait is None:
                    await self._waiter
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._waiter
            finally:
                self._waiter = None
            if self.closed:
                raise _Closed
            if not self._items:
                return None
        return self._items.popleft()

    def close(self) -> list[_Envelope]:
        """Refuse further commands; return those still waiting."""
        self.closed = True
        self._wake()
        left = list(self._items)
        self._items.clear()
        return left

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


# -- the cell --------------------------------------------------------------------------


class ActorCell:
    """Runs, supervises and addresses one actor (see the module's docstring)."""

    def __init__(
        self,
        actor: type[Actor],
        factory: Callable[[], Actor],
        *,
        lease: Lease | None = None,
        mailbox_size: int = 64,
        backoff: Backoff = _RESTARTS,
        healthy_after: float = 60.0,
    ) -> None:
        self.actor_type = actor
        self.name = actor.name
        self._factory = factory
        self._lease = lease
        self._mailbox = Mailbox(mailbox_size)
        self._backoff = backoff
        self._healthy_after = healthy_after
        self._state = ActorState.STOPPED
        self._paused = False
        self._restarts = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._restart_at: float | None = None
        self._stop_requested = asyncio.Event()
        # Set once the cell knows whether it leads (at once without a lease).
        self._placed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- addressing --

    @property
    def state(self) -> ActorState:
        return self._state

    @property
    def active(self) -> bool:
        """Whether this process runs the actor now (rather than standing by or stopped)."""
        return self._state in (ActorState.RUNNING, ActorState.PAUSED, ActorState.RESTARTING)

    @property
    def restarts(self) -> int:
        return self._restarts

    def info(self) -> ActorInfo:
        restart_in = None
        if self._state is ActorState.RESTARTING and self._restart_at is not None:
            restart_in = round(max(0.0, self._restart_at - time.monotonic()), 3)
        return ActorInfo(
            self.name,
            self._state,
            len(self._mailbox),
            self._restarts,
            self._last_error,
            self._last_error_at,
            restart_in,
        )

    def tell(self, command: Command) -> None:
        """Queue ``command`` without waiting for it; MailboxFull when the mailbox is full."""
        self._check_accepts()
        self._mailbox.put(_Envelope(command, None))

    async def ask(self, command: Command, *, wait: float = 10.0) -> object:
        """Queue ``command`` and return the actor's reply (or raise its error)."""
        self._check_accepts()
        reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        # An answer that comes after the asker gave up is dropped without a warning.
        reply.add_done_callback(_consume)
        self._mailbox.put(_Envelope(command, reply))
        try:
            async with asyncio.timeout(wait):
                return await asyncio.shield(reply)
        except TimeoutError:
            # Still waiting in the mailbox: it will not run. Already running: it finishes.
            reply.cancel()
            raise ActorTimeout(
                f"{self.name} did not answer {command_name(type(command))!r} within {wait:g} s"
            ) from None

    def _check_accepts(self) -> None:
        if self._state is ActorState.STANDBY:
            raise ActorUnavailable(f"{self.name} runs in another process")
        if self._task is None or self._mailbox.closed:
            raise ActorUnavailable(f"{self.name} is not running")

    # -- life cycle --

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"actor {self.name} was already started")
        self._state = ActorState.STANDBY if self._lease is not None else ActorState.RUNNING
        self._task = asyncio.create_task(self._main(), name=f"actor:{self.name}")

    async def stop(self, deadline: float = 5.0) -> bool:
        """Stop the actor; True if it stopped within ``deadline`` seconds, False if cancelled."""
        task = self._task
        if task is None or task.done():
            self._finish()
            return True
        self._stop_requested.set()
        for envelope in self._mailbox.close():
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(ActorUnavailable(f"{self.name} is stopping"))
        done, _ = await asyncio.wait({task}, timeout=deadline)
        clean = bool(done)
        if not clean:
            log.warning("actor %s did not stop within %.1f s; cancelling it", self.name, deadline)
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("actor %s ended with an error", self.name, exc_info=exc)
        if self._lease is not None:
            try:
                async with asyncio.timeout(2.0):
                    await self._lease.release()
            except Exception as exc:
                log.warning(
                    "actor %s: could not release its lease (%s); it expires", self.name, exc
                )
        self._finish()
        return clean

    def _finish(self) -> None:
        self._state = ActorState.STOPPED
        self._mailbox.close()

    async def _main(self) -> None:
        """Lead (or stand by), run the actor, and start over when leadership is lost."""
        while not self._stop_requested.is_set():
            if self._lease is None:
                self._placed.set()
                await self._supervise()
                return
            sent = await self._try_acquire()
            if sent is None:
                self._state = ActorState.STANDBY
                self._placed.set()
                await self._sleep(self._lease.ttl / 5)
                continue
            log.info("actor %s: this process leads; starting it", self.name)
            try:
                # An operator's pause holds wherever the actor runs.
                async with asyncio.timeout(self._lease.ttl / 5):
                    self._paused = await self._lease.paused()
            except Exception as exc:
                log.warning(
                    "actor %s: could not read whether it is paused: %s", self.name, _why(exc)
                )
            runner = asyncio.create_task(self._supervise(), name=f"actor:{self.name}:run")
            keeper = asyncio.create_task(
                self._keep_lease(sent + self._lease.ttl), name=f"actor:{self.name}:lease"
            )
            try:
                await asyncio.wait({runner, keeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                keeper.cancel()
                if not runner.done():
                    # Leadership lost (or we are cancelled): the actor must stop at once,
                    # wherever it is, so that two processes never run it together.
                    runner.cancel()
                await asyncio.wait({runner, keeper})
            if runner.done() and not runner.cancelled() and runner.exception() is None:
                return  # stopped
            log.warning("actor %s: lost its lease; standing by", self.name)
            self._state = ActorState.STANDBY

    async def _try_acquire(self) -> float | None:
        """Try to take (or keep) the lease; when we hold it, the monotonic time the request
        was sent: the lease runs ``ttl`` from no earlier than that."""
        assert self._lease is not None
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._lease.ttl / 3):
                held = await self._lease.acquire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("actor %s: could not check its lease: %s", self.name, _why(exc))
            return None
        return sent if held else None

    async def _keep_lease(self, valid_until: float) -> None:
        """Renew the lease every third of its ttl; return once it is lost, or once it might
        have expired for the others.

        ``valid_until`` counts from when a renewal was *sent*: the database stamps it
        later, so the others see it expire no earlier than we stop.
        """
        assert self._lease is not None
        ttl = self._lease.ttl
        margin = ttl / 5
        pause = ttl / 3
        while True:
            await asyncio.sleep(max(0.0, min(pause, valid_until - margin - time.monotonic())))
            budget = valid_until - margin - time.monotonic()
            if budget <= 0:
                log.warning("actor %s: could not renew its lease in time", self.name)
                return
            sent = time.monotonic()
            try:
                async with asyncio.timeout(min(ttl / 3, budget)):
                    held = await self._lease.acquire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("actor %s: renewing its lease failed: %s", self.name, _why(exc))
                pause = ttl / 10
                continue
            if not held:
                return
            valid_until = sent + ttl
            pause = ttl / 3

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_requested.wait()

    async def placed(self) -> None:
        """Wait until the cell runs its actor or knows another process does."""
        await self._placed.wait()

    async def _supervise(self) -> None:
        """Run fresh instances of the actor until it is stopped, backing off after crashes."""
        loop = asyncio.get_running_loop()
        crashes = 0
        while not self._stop_requested.is_set():
            started = loop.time()
            self._state = ActorState.PAUSED if self._paused else ActorState.RUNNING
            self._placed.set()
            actor: Actor | None = None
            try:
                actor = self._factory()
                await actor.on_start()
                await self._serve(actor)
            except _Closed:
                if actor is not None:
                    await self._stop_actor(actor)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() - started >= self._healthy_after:
                    crashes = 0
                crashes += 1
                self._restarts += 1
                # The first line only: a database error goes on with its SQL and parameters.
                self._last_error = _why(exc)
                self._last_error_at = time.time()
                delay = self._backoff.delay(crashes)
                log.error(
                    "actor %s crashed (restart %d, %d in a row); restarting in %.1f s",
                    self.name,
                    self._restarts,
                    crashes,
                    delay,
                    exc_info=exc,
                )
                self._state = ActorState.RESTARTING
                self._restart_at = time.monotonic() + delay
                await self._sleep(delay)
                self._restart_at = None

    async def _stop_actor(self, actor: Actor) -> None:
        try:
            await actor.on_stop()
        except Exception:
            log.exception("actor %s: stopping it failed", self.name)

    async def _serve(self, actor: Actor) -> None:
        """Handle commands and ticks, one at a time, until the mailbox closes."""
        loop = asyncio.get_running_loop()
        interval = actor.interval
        next_tick = loop.time() if interval is not None else None
        while True:
            timeout = None
            if next_tick is not None and not self._paused:
                timeout = max(0.0, next_tick - loop.time())
            envelope = await self._mailbox.get(timeout)
            if envelope is not None:
                await self._deliver(actor, envelope)
                continue
            if next_tick is None or self._paused:
                continue
            await actor.tick()
            assert interval is not None
            # A fixed rate, without a burst of catch-up ticks after a slow one.
            next_tick = max(next_tick + interval, loop.time())

    async def _deliver(self, actor: Actor, envelope: _Envelope) -> None:
        command, reply = envelope.command, envelope.reply
        if reply is not None and reply.cancelled():
            return  # its asker gave up before it came up: not run at all
        try:
            result = await self._handle(actor, command)
        except StreamchatError as exc:
            # The command's own failure, reported to its sender; the actor is fine.
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            elif reply is None:
                log.warning("actor %s: %s failed: %s", self.name, type(command).__name__, exc)
            return
        except Exception as exc:
            if reply is not None and not reply.done():
                reply.set_exception(ActorCrashed(f"{self.name} crashed handling it ({_why(exc)})"))
            raise
        if reply is not None and not reply.done():
            reply.set_result(result)

    async def _handle(self, actor: Actor, command: Command) -> object:
        match command:
            case Pause() | Resume():
                self._paused = isinstance(command, Pause)
                self._state = ActorState.PAUSED if self._paused else ActorState.RUNNING
                if self._lease is not None:
                    await self._lease.set_paused(self._paused)
                return {"state": self._state}
            case Broadcast(text=text):
                return await actor.on_broadcast(text)
        return await actor.handle(command)


def _why(exc: BaseException) -> str:
    """An exception in one short line: its type, and the first line of its message."""
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _consume(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


# -- the system ------------------------------------------------------------------------


class ActorSystem:
    """The actors of one process."""

    def __init__(self) -> None:
        self._cells: dict[str, ActorCell] = {}
        self._started = False

    def add(
        self,
        actor: type[Actor],
        factory: Callable[[], Actor],
        *,
        lease: Lease | None = None,
        **options: Any,
    ) -> ActorCell:
        if actor.name in self._cells:
            raise ValueError(f"an actor named {actor.name!r} exists already")
        cell = self._cells[actor.name] = ActorCell(actor, factory, lease=lease, **options)
        if self._started:
            cell.start()
        return cell

    def __contains__(self, name: str) -> bool:
        return name in self._cells

    def cell(self, name: str) -> ActorCell:
        cell = self._cells.get(name)
        if cell is None:
            raise UnknownActor(f"no actor {name!r} in this process")
        return cell

    @property
    def cells(self) -> Sequence[ActorCell]:
        return list(self._cells.values())

    def start(self) -> None:
        self._started = True
        for cell in self._cells.values():
            cell.start()

    async def placed(self, wait: float = 5.0) -> None:
        """Wait (at most ``wait`` seconds) until every actor runs here or is known to run
        elsewhere, so that a process that has just started answers for its actors."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.gather(*(cell.placed() for cell in self._cells.values()))

    def tell_active(self, command: Command) -> int:
        """Tell every actor active in this process; return how many took it."""
        told = 0
        for cell in self._cells.values():
            if not cell.active:
                continue
            try:
                cell.tell(command)
                told += 1
            except StreamchatError as exc:
                log.warning("actor %s did not take %s: %s", cell.name, type(command).__name__, exc)
        return told

    async def stop(self, deadline: float = 5.0) -> dict[str, bool]:
        """Stop every actor at once within ``deadline`` s; by name, whether it stopped cleanly."""
        cells = list(self._cells.values())
        results = await asyncio.gather(*(cell.stop(deadline) for cell in cells))
        outcome = {cell.name: clean for cell, clean in zip(cells, results, strict=True)}
        if cancelled := [name for name, clean in outcome.items() if not clean]:
            log.warning("actors cancelled at shutdown: %s", ", ".join(cancelled))
        return outcome
