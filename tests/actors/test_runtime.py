"""The actor runtime: mailboxes, replies, supervision, pause, stop deadlines and leases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest
from sqlalchemy import text

from streamchat.actors import Actor, ActorCell, ActorState, ActorSystem, Command
from streamchat.actors.cluster import DatabaseLease
from streamchat.actors.runtime import Broadcast, Lease, Pause, Resume, parse_command
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
from tests.helpers import wait_for


class Add(Command, tag="add", frozen=True):
    amount: int


class Block(Command, tag="block", frozen=True):
    """Hold the actor until the test lets it go."""


class Boom(Command, tag="boom", frozen=True):
    pass


class Refuse(Command, tag="refuse", frozen=True):
    pass


class Gate:
    """Where Block holds the actor: the test learns that the actor got there, and opens it."""

    def __init__(self) -> None:
        self._reached = asyncio.Event()
        self._opened = asyncio.Event()

    async def hold(self) -> None:
        self._reached.set()
        await self._opened.wait()

    async def reached(self, within: float = 5.0) -> None:
        """Wait until the actor is inside Block."""
        async with asyncio.timeout(within):
            await self._reached.wait()

    def open(self) -> None:
        self._opened.set()


class Counter(Actor):
    """Counts, ticks, and misbehaves on demand."""

    name: ClassVar[str] = "counter"
    commands: ClassVar[tuple[type[Command], ...]] = (Add, Block, Boom, Refuse)
    instances: ClassVar[int] = 0

    def __init__(
        self,
        *,
        interval: float | None = None,
        gate: Gate | None = None,
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
                await self._gate.hold()
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


class CountedLease:
    """A lease that counts the answers to its ``acquire``: the attempts to take or renew it."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self.ttl = lease.ttl
        self.attempts = 0

    async def acquire(self) -> bool:
        held = await self._lease.acquire()
        self.attempts += 1
        return held

    async def release(self) -> None:
        await self._lease.release()

    async def paused(self) -> bool:
        return await self._lease.paused()

    async def set_paused(self, paused: bool) -> None:
        await self._lease.set_paused(paused)


async def more_attempts(leases: list[CountedLease], count: int) -> None:
    """Wait until each of ``leases`` has answered ``count`` more attempts to take or renew it."""
    since = [lease.attempts for lease in leases]
    await wait_for(
        lambda: all(
            lease.attempts >= before + count for lease, before in zip(leases, since, strict=True)
        ),
        10.0,
    )


async def ticks_were_due(started: Callable[..., ActorCell], interval: float, ticks: int) -> None:
    """Wait until a free-running witness ticking every ``interval`` seconds has ticked
    ``ticks`` times: meanwhile that many ticks were due for any actor on that interval."""
    witness: list[Counter] = []

    def make() -> Counter:
        witness.append(Counter(interval=interval))
        return witness[-1]

    cell = started(make)
    await wait_for(lambda: witness and witness[0].ticks >= ticks, 5.0)
    await cell.stop(1.0)


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
    gate = Gate()
    cell = started(lambda: Counter(gate=gate), mailbox_size=3)
    blocked = asyncio.create_task(cell.ask(Block()))
    await gate.reached()
    for _ in range(3):
        cell.tell(Add(amount=1))
    with pytest.raises(MailboxFull):
        cell.tell(Add(amount=1))
    with pytest.raises(MailboxFull):
        await cell.ask(Add(amount=1))
    assert cell.info().mailbox == 3
    gate.open()
    assert await blocked == "released"
    assert await cell.ask(Add(amount=0)) == {"total": 3}


async def test_ask_times_out(started: Callable[..., ActorCell]) -> None:
    gate = Gate()
    cell = started(lambda: Counter(gate=gate))
    with pytest.raises(ActorTimeout):
        await cell.ask(Block(), wait=0.1)
    gate.open()
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
        await wait_for(lambda: cell.state is ActorState.RUNNING)
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
    await wait_for(lambda: cell.restarts >= 4)
    info = cell.info()
    assert info.state is ActorState.RESTARTING
    assert info.last_error == "RuntimeError: tick exploded"
    # Capped exponential: 0.05, 0.1, 0.2, 0.4, 0.4 ...
    assert info.restart_in is not None
    assert 0 < info.restart_in <= 0.4
    await wait_for(lambda: cell.restarts >= 6, within=5)
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
    await wait_for(lambda: actors and actors[0].ticks >= 3)
    assert await cell.ask(Pause()) == {"state": "paused"}
    assert cell.state is ActorState.PAUSED
    paused_at = actors[0].ticks
    await ticks_were_due(started, interval=0.02, ticks=6)
    assert actors[0].ticks == paused_at
    # Commands still work while paused.
    assert await cell.ask(Add(amount=1)) == {"total": 1}
    assert await cell.ask(Resume()) == {"state": "running"}
    await wait_for(lambda: actors[0].ticks >= paused_at + 3)


async def test_stop_within_the_deadline_or_cancel(started: Callable[..., ActorCell]) -> None:
    polite = started(Counter)
    gate = Gate()

    def stubborn_actor() -> Counter:
        return Counter(gate=gate)

    stubborn = started(stubborn_actor)
    await polite.ask(Add(amount=1))
    stuck = asyncio.create_task(stubborn.ask(Block()))
    await gate.reached()
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
    gate = Gate()

    def make() -> Counter:
        made.append(Counter(gate=gate))
        return made[-1]

    system = ActorSystem()
    cell = system.add(Counter, make)
    system.start()
    blocked = asyncio.create_task(cell.ask(Block()))
    await gate.reached()
    waiting = asyncio.create_task(cell.ask(Add(amount=1)))
    await wait_for(lambda: cell.info().mailbox == 1)
    stopping = asyncio.create_task(system.stop(2.0))
    with pytest.raises(ActorUnavailable):
        await waiting
    gate.open()
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
        await wait_for(lambda: made and made[0].broadcasts == ["hello"])
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
    await wait_for(lambda: one.state is ActorState.RUNNING)
    lease = CountedLease(DatabaseLease(cluster_store, "counter", "node-2", ttl=1.0))
    two = started(Counter, lease=lease)
    await wait_for(lambda: lease.attempts >= 3)  # several of two's attempts
    assert two.state is ActorState.STANDBY
    with pytest.raises(ActorUnavailable):
        await two.ask(Add(amount=1))
    assert await cluster_store.holder("actor:counter") == "node-1"
    await one.stop(1.0)  # releases the lease: two takes over at its next attempt
    await wait_for(lambda: two.state is ActorState.RUNNING, within=2.0)
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
    await wait_for(lambda: one.state is ActorState.RUNNING)
    # Someone else holds it now (as after a long stall of this process).
    await cluster_store.release("actor:counter", "node-1")
    assert await cluster_store.acquire("actor:counter", "node-9", ttl=30.0)
    await wait_for(lambda: one.state is ActorState.STANDBY, within=2.0)
    ticks = made[-1].ticks
    await ticks_were_due(started, interval=0.01, ticks=6)
    assert made[-1].ticks == ticks  # it no longer runs


async def test_a_paused_actor_stays_paused_in_the_process_that_takes_over(
    cluster_store: ClusterStore, started: Callable[..., ActorCell]
) -> None:
    one = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-1", ttl=1.0))
    await wait_for(lambda: one.state is ActorState.RUNNING)
    two = started(Counter, lease=DatabaseLease(cluster_store, "counter", "node-2", ttl=1.0))
    await one.ask(Pause())
    await one.stop(1.0)
    await wait_for(lambda: two.active, within=3.0)
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
    leases = [CountedLease(DatabaseLease(store, "counter", f"node-{i}", ttl=1.5)) for i in (1, 2)]
    cells = [started(lambda: Counter(interval=0.01), lease=lease) for lease in leases]
    await wait_for(lambda: any(cell.state is ActorState.RUNNING for cell in cells))
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
            # After the stall, someone leads again; the sampler watches on while both
            # candidates go through a few rounds of taking and renewing the lease.
            await wait_for(lambda: any(cell.state is ActorState.RUNNING for cell in cells), 10)
            await more_attempts(leases, 3)
    finally:
        sampling = False
        await sampler
    assert overlaps == 0


async def test_an_ask_given_up_on_before_it_ran_never_runs(
    started: Callable[..., ActorCell],
) -> None:
    gate = Gate()
    cell = started(lambda: Counter(gate=gate))
    blocked = asyncio.create_task(cell.ask(Block()))
    await gate.reached()
    with pytest.raises(ActorTimeout):
        await cell.ask(Add(amount=5), wait=0.05)
    gate.open()
    await blocked
    assert await cell.ask(Add(amount=0)) == {"total": 0}


@pytest.mark.parametrize("text", ["", "   ", "line\nbreak", "\x1b[31m", "\ud800", "x" * 501])
def test_broadcast_text_is_checked_like_a_chat_line(text: str) -> None:
    with pytest.raises(InvalidCommand):
        parse_command(Counter, "broadcast", {"text": text})
