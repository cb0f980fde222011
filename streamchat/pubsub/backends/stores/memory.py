"""A store in this process's memory: for tests and single-process deployments.

History lives as long as the instance: a new instance (a restarted process) gives every
channel a new epoch, so positions taken before are recognised as lost.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable

from ..._message import Message
from .._options import option, pop_options, positive_int
from ..base import Store

__all__ = ["MemoryStore"]


class _Log:
    __slots__ = ("dedupe", "epoch", "last_seq", "messages")

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(8)
        self.last_seq = 0
        self.messages: deque[tuple[Message, str | None]] = deque()
        self.dedupe: dict[str, Message] = {}

    def first_seq(self) -> int:
        return self.messages[0][0].seq if self.messages else self.last_seq + 1


class MemoryStore(Store):
    """``memory://`` (option ``?max_messages=N`` keeps the N newest per channel).

    ``clock`` gives the messages' time (UNIX seconds); tests move it to age messages.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_messages: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _, options = pop_options(url, {"max_messages"})
        self.max_messages = positive_int(
            "max_messages", option(max_messages, options, "max_messages")
        )
        self._clock = clock
        self._logs: dict[str, _Log] = {}

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    def _log(self, channel: str) -> _Log:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _Log()
        return log

    async def append(
        self, channel: str, payload: bytes, *, dedupe_key: str | None = None
    ) -> tuple[Message, bool]:
        log = self._log(channel)
        if dedupe_key is not None:
            original = log.dedupe.get(dedupe_key)
            if original is not None:
                return original, False
        log.last_seq += 1
        message = Message(channel, log.last_seq, payload, self._clock(), log.epoch)
        log.messages.append((message, dedupe_key))
        if dedupe_key is not None:
            log.dedupe[dedupe_key] = message
        if self.max_messages is not None:
            while len(log.messages) > self.max_messages:
                _, key = log.messages.popleft()
                if key is not None:
                    del log.dedupe[key]
        return message, True

    async def find(self, channel: str, dedupe_key: str) -> Message | None:
        log = self._logs.get(channel)
        return None if log is None else log.dedupe.get(dedupe_key)

    async def read(self, channel: str, *, after: int = 0, limit: int = 100) -> list[Message]:
        log = self._logs.get(channel)
        if log is None:
            return []
        start = max(0, after + 1 - log.first_seq())
        return [m for m, _ in itertools.islice(log.messages, start, start + limit)]

    async def history(
        self, channel: str, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        log = self._logs.get(channel)
        if log is None:
            return []
        end = len(log.messages)
        if before is not None:
            end = min(end, max(0, before - log.first_seq()))
        start = max(0, end - limit)
        return [m for m, _ in itertools.islice(log.messages, start, end)]

    async def redact(
        self, channel: str, seqs: Iterable[int] = (), *, through: int | None = None
    ) -> list[int]:
        log = self._logs.get(channel)
        if log is None or not log.messages:
            return []
        wanted = set(seqs)
        first = log.first_seq()
        if through is not None:
            wanted.update(range(first, min(through, log.last_seq) + 1))
        done: list[int] = []
        for seq in sorted(wanted):
            index = seq - first
            if not 0 <= index < len(log.messages):
                continue
            message, key = log.messages[index]
            if message.redacted:
                continue
            blank = dataclasses.replace(message, payload=b"")
            log.messages[index] = (blank, key)
            if key is not None:
                log.dedupe[key] = blank
            done.append(seq)
        return done

    async def last(self, channel: str) -> tuple[str, int]:
        log = self._log(channel)
        return log.epoch, log.last_seq

    async def prune(
        self, *, older_than: float | None = None, keep_last: int | None = None, limit: int = 1000
    ) -> int:
        self._check_prune(older_than, keep_last, limit)
        deleted = 0
        for log in self._logs.values():
            surplus = log.last_seq - keep_last if keep_last is not None else 0
            while deleted < limit and log.messages:
                message, key = log.messages[0]
                if message.seq > surplus and not (
                    older_than is not None and message.time < older_than
                ):
                    break
                log.messages.popleft()
                if key is not None:
                    del log.dedupe[key]
                deleted += 1
            if deleted == limit:
                break
        return deleted
