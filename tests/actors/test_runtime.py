"""The actor runtime: mailboxes, replies, supervision, pause, stop deadlines and leases."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest
from sqlalchemy import text

from streamchat.actors import Actor, ActorCell, ActorState, ActorSystem, Command
from streamchat.actors.cluster import DatabaseLease
from streamchat.actors.runtime import Broadcast, Pause, Resume, parse_command
from streamchat.backoff import Backoff
from streamchat.errors import (
    ActorCrashed,
    ActorTimeout,
    ActorUnavailable,
    InvalidCommand,
    MailboxFull,
    NotFound,
)
from streamchat.store.cluster import ClusterStore
from streamchat.store.database import Database


class Add(Command, tag="add", frozen=True):
    amount: int


class Block(Command, tag="block", frozen=True):
    """Hold the actor until the test lets it go."""


class Boom(Command, tag="boom", frozen=True):
    pass


class Refuse(Command, tag="refuse", frozen=True):
    pass


class Counter(Actor):
    """Counts, ticks, and misbehaves on demand."""

    name: ClassVar[str] = "counter"
    commands: ClassVar[tuple[type[Command], ...]] = (Add, Block, Boom, Refuse)
    instances: ClassVar[int] = 0

    def __init__(
        self,
        *,
        interval: float | None = None,
        gate: asyncio.Event | None = None,
        tick_fails: bool = False,
    ) -> None:
        type(self).instances += 1
        self.interval = interval
        self.total = 0
        self.ticks = 0
        self.stopped = False
        self.broadcasts: list[str] = []
        self._gate = gate
        self._tick_fails = tick_fails

    async def tick(self) -> None:
        self.ticks += 1
        if self._tick_fails:
            raise RuntimeError("tick exploded")

    async def handle(self, command: Command) -> object:
        match command:
            case Add(amount=amount):
                self.total += amount
                return {"total": self.total}
            case Block():
                assert self._gate is not None
                await self._gate.wait()
                return "released"
            case Boom():
                raise ValueError("kaboom")
            case Refuse():
                raise NotFound("no such thing")
        raise AssertionError(command)

    async def on_broadcast(self, text: str) -> object:
        self.broadcasts.append(text)
        return None

    async def on_stop(self) -> None:
        self.stopped = True


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., ActorCell]]:
    """Start cells; stop whatever the test left running."""
    cells: list[ActorCell] = []

    def start(factory: Callable[[], Actor], **options: object) -> ActorCell:
        cell = ActorCell(Counter, factory, **options)  # type: ignore[arg-type]
        cell.start()
        cells.append(cell)
        return cell

    yield start
    for cell in cells:
        await cell.stop(2.0)


async def until(condition: Callable[[], bool], wait: float = 5.0) -> None:
    async with asyncio.timeout(wait):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_ask_returns_the_reply_and_commands_run_one_at_a_time(
    started: Callable[..., ActorCell],
) -> None:
    cell = started(Counter)
    replies = await asyncio.gather(*(cell.ask(Add(amount=1)) for _ in range(20)))
    # One at a time: every reply saw its own increment, none was lost.
    assert sorted(r["total"] for r in replies) == list(range(1, 21))  # type: ignore[index]
    cell.tell(Add(amount=5))
    assert await cell.ask(Add(amount=0)) == {"total": 25}


async def test_a_full_mailbox_is_the_senders_error(started: Callable[..., ActorCell]) -> None:
    gate = asyncio.Event()
    cell = started(lambda: Counter(gate=gate), mailbox_size=3)
    blocked = asyncio.create_task(cell.ask(Block()))
    await until(lambda: len(cell._mailbox) == 0 and not blocked.done())
    await asyncio.sleep(0.05)  # the actor is inside Block now
    for _ in range(3):
        cell.tell(Add(amount=1))
    with pytest.raises(MailboxFull):
        cell.tell(Add(amount=1))
    with pytest.raises(MailboxFull):
        await cell.ask(Add(amount=1))
    assert cell.info().mailbox == 3
    gate.set()
    assert await blocked == "released"
    assert await cell.ask(Add(amount=0)) == {"total": 3}


async def test_ask_times_out(started: Callable[..., ActorCell]) -> None:
    gate = asyncio.Event()
    cell = started(lambda: Counter(gate=gate))
    with pytest.raises(ActorTimeout):
        await cell.ask(Block(), wait=0.1)
    gate.set()
    assert await cell.ask(Add(amount=2)) == {"total": 2}


async def test_a_command_error_is_replied_and_the_actor_keeps_its_state(
    started: Callable[..., ActorCell],
) -> None:
    cell = started(Counter)
    await cell.ask(Add(amount=7))
    with pytest.raises(NotFound):
        await cell.ask(Refuse())
    assert cell.restarts == 0
    assert await cell.ask(Add(amount=0)) == {"total": 7}


async def test_a_crash_while_handling_is_replied_restarts_with_fresh_state(
    started: Callable[..., ActorCell], caplog: pytest.LogCaptureFixture
) -> None:
    cell = started(Counter, backoff=Backoff(0.05, 0.05, jitter=False))
    await cell.ask(Add(amount=7))
    with caplog.at_level(logging.ERROR, logger="streamchat.actors"):
        with pytest.raises(ActorCrashed):
            await cell.ask(Boom())
        await until(lambda: cell.state is ActorState.RUNNING)
    assert cell.restarts == 1
    info = cell.info()
    assert info.last_error == "ValueError: kaboom"
    assert info.last_error_at is not None
    # Logged with its traceback.
    crash = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert crash
    assert crash[0].exc_info is not None
    # A fresh instance: the state before the crash is gone.
    assert await cell.ask(Add(amount=1)) == {"total": 1}


async def test_a_crash_loop_backs_off_and_shows(started: Callable[..., ActorCell]) -> None:
    cell = started(
        lambda: Counter(interval=0.01, tick_fails=True), backoff=Backoff(0.05, 0.4, jitter=False)
    )
    await until(lambda: cell.restarts >= 4)
    info = cell.info()
    assert info.state is ActorState.RESTARTING
    assert info.last_error == "RuntimeError: tick exploded"
    # Capped exponential: 0.05, 0.1, 0.2, 0.4, 0.4 ...
    assert info.restart_in is not None
    assert 0 < info.restart_in <= 0.4
    await until(lambda: cell.restarts >= 6, wait=5)
    assert cell.info().restart_in is not None
    assert cell.info().restart_in <= 0.4  # type: ignore[operator]


async def test_ticks_run_on_their_interval_and_pause_stops_them(
    started: Callable[..., ActorCell],
) -> None:
    actors: list[Counter] = []

    def make() -> Counter:
        actors.append(Counter(interval=0.02))
        return actors[-1]

    cell = started(make)
    await until(lambda: actors and actors[0].ticks >= 3)
    assert await cell.ask(Pause()) == {"state": "paused"}
    assert cell.state is ActorState.PAUSED
    paused_at = actors[0].ticks
    await asyncio.sleep(0.15)
    assert actors[0].ticks == paused_at
    # Commands still work while paused.
    assert await cell.ask(Add(amount=1)) == {"total": 1}
    assert await cell.ask(Resume()) == {"state": "running"}
    await until(lambda: actors[0].ticks >= paused_at + 3)


async def test_stop_within_the_deadline_or_cancel(started: Callable[..., ActorCell]) -> None:
    polite = started(Counter)
    gate = asyncio.Event()

    def stubborn_actor() -> Counter:
        return Counter(gate=gate)

    stubborn = started(stubborn_actor)
    await polite.ask(Add(amount=1))
    stuck = asyncio.create_task(stubborn.ask(Block()))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await polite.stop(1.0) is True
    assert await stubborn.stop(0.2) is False
    assert loop.time() - began < 2.0
    assert polite.state is stubborn.state is ActorState.STOPPED
    with pytest.raises(ActorUnavailable):
        await polite.ask(Add(amount=1))
    stuck.cancel()


async def test_stop_calls_on_stop_and_fails_waiting_asks() -> None:
    made: list[Counter] = []
    gate = asyncio.Event()

    def make() -> Counter:
        made.append(Counter(gate=gate))
        return made[-1]

    system = ActorSystem()
    cell = system.add(Counter, make)
    system.start()
    blocked = asyncio.create_task(cell.ask(Block()))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(cell.ask(Add(amount=1)))
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(system.stop(2.0))
    await asyncio.sleep(0.05)
    with pytest.raises(ActorUnavailable):
        await waiting
    gate.set()
    assert await stopping == {"counter": True}
    assert await blocked == "released"
    assert made[0].stopped


async def test_broadcast_reaches_active_actors(started: Callable[..., ActorCell]) -> None:
    made: list[Counter] = []

    def make() -> Counter:
        made.append(Counter())
        return made[-1]

    system = ActorSystem()
    system.add(Counter, make)
    system.start()
    try:
        assert system.tell_active(Broadcast(text="hello")) == 1
        await until(lambda: made and made[0].broadcasts == ["hello"])
    finally:
        await system.stop()


def test_parse_command_builds_typed_commands_and_refuses_bad_ones() -> None:
    assert parse_command(Counter, "add", {"amount": 3}) == Add(amount=3)
    assert parse_command(Counter, "pause", None) == Pause()
    with pytest.raises(InvalidCommand, match="no command 'nope'"):
        parse_command(Counter, "nope", {})
    with pytest.raises(InvalidCommand, match="amount"):
        parse_command(Counter, "add", {"amount": "three"})
    with pytest.raises(InvalidCommand, match="unknown field"):
        parse_command(Counter, "add", {"amount": 1, "extra": True})
    with pytest.raises(InvalidCommand):
        parse_command(Counter, "add", ["not", "an", "object"])


# -- leases ------------------------------------------------------------------------------


@pytest.fixture
async def cluster_store(tmp_path: Path) -> AsyncIterator[ClusterStore]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'lease.db'}")
    await db.migrate()
    try:
        yield ClusterStore(db)
    finally:
        await db.close()


# The store first: fixtures are torn down in reverse, so the cells stop before it closes.
async def test_one_leaseholder_runs_the_actor_and_another_takes_over(
    cluster_store: ClusterStore, started: Callable[..., ActorCell]
) -> None:
    one = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-1", ttl=1.0))
    await until(lambda: one.state is ActorState.RUNNING)
    two = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-2", ttl=1.0))
    await asyncio.sleep(0.6)  # several of two's attempts
    assert two.state is ActorState.STANDBY
    with pytest.raises(ActorUnavailable):
        await two.ask(Add(amount=1))
    assert await cluster_store.holder("actor:counter") == "node-1"
    await one.stop(1.0)  # releases the lease: two takes over at its next attempt
    await until(lambda: two.state is ActorState.RUNNING, wait=2.0)
    assert await two.ask(Add(amount=1)) == {"total": 1}
    assert await cluster_store.holder("actor:counter") == "node-2"


async def test_a_leader_that_loses_its_lease_stands_down(
    cluster_store: ClusterStore, started: Callable[..., ActorCell]
) -> None:
    made: list[Counter] = []

    def make() -> Counter:
        made.append(Counter(interval=0.01))
        return made[-1]

    one = started(make, lease=DatabaseLease(cluster_store, "counter", "node-1", ttl=1.0))
    await until(lambda: one.state is ActorState.RUNNING)
    # Someone else holds it now (as after a long stall of this process).
    await cluster_store.release("actor:counter", "node-1")
    assert await cluster_store.acquire("actor:counter", "node-9", ttl=30.0)
    await until(lambda: one.state is ActorState.STANDBY, wait=2.0)
    ticks = made[-1].ticks
    await asyncio.sleep(0.1)
    assert made[-1].ticks == ticks  # it no longer runs


async def test_a_paused_actor_stays_paused_in_the_process_that_takes_over(
    cluster_store: ClusterStore, started: Callable[..., ActorCell]
) -> None:
    one = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-1", ttl=1.0))
    await until(lambda: one.state is ActorState.RUNNING)
    two = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-2", ttl=1.0))
    await one.ask(Pause())
    await one.stop(1.0)
    await until(lambda: two.active, wait=3.0)
    assert two.state is ActorState.PAUSED
    await two.ask(Resume())
    assert await cluster_store.paused("actor:counter") is False


@pytest.fixture
async def postgres_cluster_store(postgres_database: str) -> AsyncIterator[ClusterStore]:
    db = Database(postgres_database.replace("postgresql://", "postgresql+asyncpg://", 1))
    await db.migrate()
    async with db.session() as session:
        await session.execute(text("DELETE FROM actor_leases"))
    try:
        yield ClusterStore(db)
    finally:
        await db.close()


async def test_a_stalled_database_never_lets_two_processes_run_the_actor(
    postgres_database: str,
    postgres_cluster_store: ClusterStore,
    started: Callable[..., ActorCell],
) -> None:
    """The lease table is locked for longer than the ttl; every statement queues behind
    the lock and runs late. At no moment may both candidates be running the actor."""
    store = postgres_cluster_store
    cells = [
        started(
            lambda: Counter(interval=0.01),
            lease=DatabaseLease(store, "counter", f"node-{i}", ttl=1.5),
        )
        for i in (1, 2)
    ]
    await until(lambda: any(cell.state is ActorState.RUNNING for cell in cells))
    overlaps = 0
    sampling = True

    async def sample() -> None:
        nonlocal overlaps
        while sampling:
            overlaps += all(cell.active for cell in cells)
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        for _ in range(2):
            locker = await asyncpg.connect(postgres_database)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE actor_leases IN ACCESS EXCLUSIVE MODE")
                    await asyncio.sleep(3.0)
            finally:
                await locker.close()
            # After the stall, someone leads again.
            await until(lambda: any(cell.state is ActorState.RUNNING for cell in cells), 10)
            await asyncio.sleep(2.0)
    finally:
        sampling = False
        await sampler
    assert overlaps == 0


async def test_an_ask_given_up_on_before_it_ran_never_runs(
    started: Callable[..., ActorCell],
) -> None:
    gate = asyncio.Event()
    cell = started(lambda: Counter(gate=gate))
    blocked = asyncio.create_task(cell.ask(Block()))
    await asyncio.sleep(0.05)
    with pytest.raises(ActorTimeout):
        await cell.ask(Add(amount=5), wait=0.05)
    gate.set()
    await blocked
    assert await cell.ask(Add(amount=0)) == {"total": 0}


@pytest.mark.parametrize("text", ["", "   ", "line\nbreak", "\x1b[31m", "\ud800", "x" * 501])
def test_broadcast_text_is_checked_like_a_chat_line(text: str) -> None:
    with pytest.raises(InvalidCommand):
        parse_command(Counter, "broadcast", {"text": text})
