"""Room rules as the rooms apply them: cached per process, the same on every process.

:class:`RoomRulesCache` keeps each room's :class:`~streamchat.store.moderation.RoomRules`
in memory. A change is written to the database first, then announced on the broker
(:data:`RULES_CHANNEL`): every process drops its copy and reads the room again on next
use, so a ban taken on one process holds on all of them at once (and, should an
announcement be lost, within :data:`RULES_TTL`).

:class:`Senders` decides whether a user may post now: the room's rate limit, slow mode
and unique mode. With several processes it must count every process's messages, so it
keeps its state in the shared database (:class:`SharedSenders`); a lone process counts
in memory (:class:`LocalSenders`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql

from streamchat.batching import BatchedLookup
from streamchat.errors import Duplicate, RateLimited, SlowMode
from streamchat.pubsub import Message, PubSub
from streamchat.store.database import Database
from streamchat.store.models import ChatSender
from streamchat.store.moderation import ModerationStore, RoomRules

__all__ = [
    "RULES_CHANNEL",
    "RULES_TTL",
    "UNIQUE_WINDOW",
    "LocalSenders",
    "RoomRulesCache",
    "Senders",
    "SharedSenders",
    "blocked_term",
]

log = logging.getLogger("streamchat.rooms")

#: A room's rules changed: the payload is its streamer ID.
RULES_CHANNEL = "rooms:rules"
#: Seconds a process trusts its copy of a room's rules without hearing of a change.
RULES_TTL = 30.0
#: Unique mode refuses a repeat of the user's previous message within this many seconds.
UNIQUE_WINDOW = 30.0


class RoomRulesCache:
    def __init__(
        self,
        store: ModerationStore | None,
        pubsub: PubSub,
        *,
        ttl: float = RULES_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._pubsub = pubsub
        self._ttl = ttl
        self._clock = clock
        # room ID -> (rules, read at)
        self._rules: dict[str, tuple[RoomRules, float]] = {}
        # The rooms asked for at once (a restart's first subscriptions) are read together.
        self._lookup = BatchedLookup(store.rules_many) if store is not None else None
        # room ID -> how many changes were heard of: a read that started before the
        # latest one is not kept.
        self._generation: dict[str, int] = {}

    def cached(self, room_id: str) -> RoomRules | None:
        """The room's rules if this process knows them (and may still trust them)."""
        cached = self._rules.get(room_id)
        if cached is not None and self._clock() - cached[1] < self._ttl:
            return cached[0]
        return None

    async def get(self, room_id: str) -> RoomRules:
        rules = self.cached(room_id)
        if rules is not None:
            return rules
        if self._lookup is None:
            return RoomRules(room_id)
        while True:
            generation = self._generation.get(room_id, 0)
            started = self._clock()
            rules = await self._lookup.get(room_id) or RoomRules(room_id)
            if self._generation.get(room_id, 0) == generation:
                self._rules[room_id] = (rules, started)
                return rules
            # A change was announced while reading: what was read may predate it.

    async def close(self) -> None:
        if self._lookup is not None:
            await self._lookup.close()

    def forget(self, room_id: str) -> None:
        """Drop this process's copy of the room's rules (they changed)."""
        self._generation[room_id] = self._generation.get(room_id, 0) + 1
        self._rules.pop(room_id, None)

    async def changed(self, room_id: str) -> None:
        """Tell every process (this one at once) that the room's rules changed."""
        self.forget(room_id)
        await self._pubsub.publish(RULES_CHANNEL, room_id.encode(), store=False)

    async def listen(self) -> None:
        """Forget the rooms whose rules changed on other processes, until cancelled."""
        await self._pubsub.listen(RULES_CHANNEL, self._heard)

    def _heard(self, message: Message) -> None:
        self.forget(message.payload.decode(errors="replace"))


_WORD = re.compile(r"\w+", re.UNICODE)


def blocked_term(text: str, terms: Iterable[str]) -> str | None:
    """The first of ``terms`` found in ``text`` as whole words, case-insensitively."""
    words = [w.casefold() for w in _WORD.findall(text)]
    if not words:
        return None
    joined = f" {' '.join(words)} "
    for term in terms:
        term_words = _WORD.findall(term.casefold())
        if term_words and f" {' '.join(term_words)} " in joined:
            return term
    return None


def text_digest(text: str) -> str:
    """What unique mode compares: the text, whitespace and case aside."""
    normal = " ".join(text.casefold().split())
    return hashlib.blake2b(normal.encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class _Sender:
    """One user's recent messages in one room: times (UNIX seconds), and the last text."""

    times: list[float]
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a message must fit in: ``limit`` per ``window`` seconds, ``slow`` seconds after
    the previous one, and (``unique``) not the previous one's text again."""

    limit: int | None
    window: float
    slow: int = 0
    unique: bool = False

    @property
    def free(self) -> bool:
        return self.limit is None and not self.slow and not self.unique


def _decide(sender: _Sender, allowance: Allowance, digest: str, now: float) -> None:
    """Raise why ``sender`` may not post now; else count the message in."""
    horizon = now - max(allowance.window, UNIQUE_WINDOW, allowance.slow)
    times = [t for t in sender.times if t > horizon]
    last = times[-1] if times else None
    if allowance.slow and last is not None and now - last < allowance.slow:
        wait = allowance.slow - (now - last)
        raise SlowMode(
            f"slow mode: one message every {allowance.slow} s; retry in {wait:.1f} s",
            details={"retry_after": round(wait, 3)},
        )
    if (
        allowance.unique
        and last is not None
        and now - last < UNIQUE_WINDOW
        and sender.digest == digest
    ):
        raise Duplicate("unique mode: this is the same as your previous message")
    if allowance.limit is not None:
        recent = [t for t in times if t > now - allowance.window]
        if len(recent) >= allowance.limit:
            wait = recent[-allowance.limit] + allowance.window - now
            raise RateLimited(
                f"at most {allowance.limit} messages per {allowance.window:g} s; "
                f"retry in {wait:.1f} s",
                details={"retry_after": round(max(wait, 0.001), 3)},
            )
    times.append(now)
    # The limit never exceeds 100 (a broadcaster's): no need to keep more times.
    sender.times = times[-128:]
    sender.digest = digest


class Senders(Protocol):
    async def admit(self, room_id: str, user_id: str, text: str, allowance: Allowance) -> None:
        """Count the message in, or raise why the user may not post it now."""

    def refund(self, room_id: str, user_id: str) -> None:
        """Take back the last message counted: it was not stored after all."""

    async def close(self) -> None: ...


class LocalSenders:
    """For a lone process: every message of the room passes here."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._senders: dict[tuple[str, str], _Sender] = {}
        self._max_keys = max_keys
        self._clock = clock

    async def admit(self, room_id: str, user_id: str, text: str, allowance: Allowance) -> None:
        key = (room_id, user_id)
        sender = self._senders.get(key)
        if sender is None:
            if len(self._senders) >= self._max_keys:
                self._prune()
            sender = self._senders[key] = _Sender([])
        _decide(sender, allowance, text_digest(text), self._clock())

    def refund(self, room_id: str, user_id: str) -> None:
        sender = self._senders.get((room_id, user_id))
        if sender is not None and sender.times:
            sender.times.pop()
            sender.digest = None

    def _prune(self) -> None:
        horizon = self._clock() - 120
        stale = [k for k, s in self._senders.items() if not s.times or s.times[-1] < horizon]
        for key in stale:
            del self._senders[key]
        if len(self._senders) >= self._max_keys:
            for key in list(self._senders)[: len(self._senders) // 2]:
                del self._senders[key]

    async def close(self) -> None:
        pass


class SharedSenders:
    """For several processes: each user's recent messages in a room are one row of the
    shared PostgreSQL database, read and written under its lock, so two processes
    deciding at once decide one after the other."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._janitor: asyncio.Task[None] | None = None
        self._refunds: set[asyncio.Task[None]] = set()

    async def admit(self, room_id: str, user_id: str, text: str, allowance: Allowance) -> None:
        key = {"room_id": room_id, "user_id": user_id}
        async with self._db.connect() as conn, conn.begin():
            await conn.execute(
                postgresql.insert(ChatSender)
                .values(**key, times="[]", digest=None, updated_at=0.0)
                .on_conflict_do_nothing()
            )
            row = (
                await conn.execute(
                    select(ChatSender.times, ChatSender.digest)
                    .where(ChatSender.room_id == room_id, ChatSender.user_id == user_id)
                    .with_for_update()
                )
            ).one()
            sender = _Sender(json.loads(row.times), row.digest)
            now = self._clock()
            _decide(sender, allowance, text_digest(text), now)  # raises: nothing written
            await conn.execute(
                update(ChatSender)
                .where(ChatSender.room_id == room_id, ChatSender.user_id == user_id)
                .values(times=json.dumps(sender.times), digest=sender.digest, updated_at=now)
            )
        self._start_janitor()

    def refund(self, room_id: str, user_id: str) -> None:
        # Called where the caller cannot wait (a failed store, being cancelled).
        task = asyncio.create_task(self._refund(room_id, user_id), name="chat-senders-refund")
        self._refunds.add(task)
        task.add_done_callback(self._refunds.discard)

    async def _refund(self, room_id: str, user_id: str) -> None:
        async with self._db.connect() as conn, conn.begin():
            row = (
                await conn.execute(
                    select(ChatSender.times)
                    .where(ChatSender.room_id == room_id, ChatSender.user_id == user_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                return
            times = json.loads(row.times)[:-1]
            await conn.execute(
                update(ChatSender)
                .where(ChatSender.room_id == bindparam("r"), ChatSender.user_id == bindparam("u"))
                .values(times=json.dumps(times), digest=None),
                {"r": room_id, "u": user_id},
            )

    def _start_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._sweep(), name="chat-senders-janitor")

    async def _sweep(self) -> None:
        """Rows of users silent for a while hold nothing any limit still counts."""
        while True:
            await asyncio.sleep(60)
            try:
                async with self._db.connect() as conn, conn.begin():
                    await conn.execute(
                        delete(ChatSender).where(ChatSender.updated_at < self._clock() - 300)
                    )
            except Exception as exc:
                log.warning("could not sweep old chat senders: %s", exc)

    async def close(self) -> None:
        if self._refunds:
            await asyncio.wait(self._refunds, timeout=5)
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
            self._janitor = None
