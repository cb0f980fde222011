"""Retention: prunes old chat history on a schedule, a bounded batch at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

from streamchat.actors.runtime import Actor, Command
from streamchat.pubsub import PubSub

__all__ = ["PruneNow", "Retention"]

log = logging.getLogger("streamchat.actors")

_DAY = 86_400.0


class PruneNow(Command, tag="prune", frozen=True):
    """Prune now; the reply says how many messages went."""


class Retention(Actor):
    """Every ``interval`` seconds, deletes messages older than ``days`` or beyond the newest
    ``max_messages`` of their room.

    Each batch is one short transaction of at most ``batch`` messages, with a
    pause between batches, so publishing goes on meanwhile. Pruning never
    renumbers: a client that subscribes ``since`` a pruned message is told
    ``recovered: false``, with the oldest ``seq`` still kept.
    """

    name: ClassVar[str] = "retention"
    commands: ClassVar[tuple[type[Command], ...]] = (PruneNow,)

    def __init__(
        self,
        pubsub: PubSub,
        *,
        days: float | None,
        max_messages: int | None,
        interval: float,
        batch: int = 1000,
        max_batches: int = 1000,
        pause: float = 0.05,
    ) -> None:
        self.interval = interval
        self._pubsub = pubsub
        self._days = days or None
        self._max_messages = max_messages or None
        self._batch = batch
        self._max_batches = max_batches
        self._pause = pause

    async def tick(self) -> None:
        await self.prune()

    async def handle(self, command: Command) -> object:
        assert isinstance(command, PruneNow)
        return {"deleted": await self.prune()}

    async def prune(self) -> int:
        if self._days is None and self._max_messages is None:
            return 0
        cutoff = time.time() - self._days * _DAY if self._days is not None else None
        deleted = 0
        # A large backlog (retention just enabled) is worked off over several ticks.
        for _ in range(self._max_batches):
            count = await self._pubsub.prune(
                older_than=cutoff, keep_last=self._max_messages, limit=self._batch
            )
            deleted += count
            if count < self._batch:
                break
            await asyncio.sleep(self._pause)
        if deleted:
            log.info("retention: pruned %d message(s)", deleted)
        return deleted
