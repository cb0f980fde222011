"""The soak's accounts: what was sent, acknowledged and received, and the checks on them.

One :class:`Ledger` is shared by every simulated client of ``bench/soak.py``
(they all run in one process). It holds each message's latest publish attempt,
its ack, the first delivery of every ``(room, seq)``, and the publish → deliver
and publish → ack latencies. Each client keeps one :class:`RoomView` per room it
ever joined: the stretches of ``seq`` it was subscribed for (:class:`Period`) and
what arrived in each. A recovery (``subscribe`` with ``since`` answered
``recovered: true``) continues a period; joining afresh starts one; leaving the
room closes it.

The protocol promises that a subscription started at ``seq`` N receives N+1,
N+2… in order for as long as it lasts, so within a period every missing
``seq`` is a loss and every repeat a duplicate; the period still open at the end
must reach the room's last ``seq``.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["AckRecord", "Ledger", "Period", "RoomView", "ViewAudit", "audit_view", "percentiles"]


@dataclass
class Period:
    """A stretch of one room a client was subscribed for: it receives ``start+1…``."""

    start: int
    last: int
    #: Inclusive ranges of ``seq`` skipped: each is a loss.
    gaps: list[tuple[int, int]] = field(default_factory=list)
    closed: bool = False

    def covers(self, seq: int) -> bool:
        """True when ``seq`` was received in this period."""
        if not self.start < seq <= self.last:
            return False
        return not any(low <= seq <= high for low, high in self.gaps)


class RoomView:
    """One client's view of one room, across its connections."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.periods: list[Period] = []
        self.epoch: str | None = None
        #: The ``seq`` of the latest ``subscribed`` reply: later ones arrive live.
        self.live_from = 0
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.unexpected = 0
        self.recoveries = 0
        self.unrecovered = 0

    @property
    def current(self) -> Period | None:
        """The open period, if the client is (or, while reconnecting, stays) subscribed."""
        if self.periods and not self.periods[-1].closed:
            return self.periods[-1]
        return None

    def subscribed(
        self, seq: int, epoch: str, *, since: int | None, recovered: bool, oldest: int | None
    ) -> None:
        """Record a ``subscribed`` reply to a request with ``since`` (or without)."""
        self.epoch = epoch
        self.live_from = seq
        if since is None:
            self.periods.append(Period(seq, seq))
            return
        if recovered:
            self.recoveries += 1
            return
        self.unrecovered += 1
        self.close()
        # The server replays from ``oldest`` when only pruning is to blame, else nothing.
        start = oldest - 1 if oldest is not None else seq
        self.periods.append(Period(start, start))

    def close(self) -> None:
        """The client left the room: the open period ends at what it last received."""
        current = self.current
        if current is not None:
            current.closed = True

    def receive(self, seq: int) -> bool:
        """Record a delivered ``seq``; True when it is new to this client."""
        period = self.current
        if period is None:
            # Not subscribed: the client left this room on an earlier connection.
            self.unexpected += 1
            return False
        if seq == period.last + 1:
            period.last = seq
        elif seq > period.last:
            period.gaps.append((period.last + 1, seq - 1))
            period.last = seq
        elif any(earlier.covers(seq) for earlier in self.periods):
            self.duplicates += 1
            return False
        else:
            # Inside a gap: it did arrive after all, though out of order.
            self.out_of_order += 1
            _fill(period, seq)
        self.received += 1
        return True


def _fill(period: Period, seq: int) -> None:
    for index, (low, high) in enumerate(period.gaps):
        if low <= seq <= high:
            parts = [(low, seq - 1), (seq + 1, high)]
            period.gaps[index : index + 1] = [(a, b) for a, b in parts if a <= b]
            return


@dataclass
class ViewAudit:
    """What one client should have received in one room, against what it did."""

    expected: int = 0
    lost_acked: list[int] = field(default_factory=list)
    missing: int = 0


def _acked_between(acked: list[int], low: int, high: int) -> list[int]:
    """The acked ``seq`` in ``low…high`` (inclusive); ``acked`` is sorted."""
    return acked[bisect.bisect_left(acked, low) : bisect.bisect_right(acked, high)]


def audit_view(view: RoomView, acked: list[int], final: int) -> ViewAudit:
    """Check ``view`` against the room's sorted acked ``seq`` and its last ``seq``."""
    audit = ViewAudit()
    for period in view.periods:
        end = period.last if period.closed else max(period.last, final)
        audit.expected += len(_acked_between(acked, period.start + 1, end))
        holes = list(period.gaps)
        if not period.closed and period.last < final:
            holes.append((period.last + 1, final))
        for low, high in holes:
            audit.missing += high - low + 1
            audit.lost_acked.extend(_acked_between(acked, low, high))
    return audit


@dataclass(frozen=True)
class AckRecord:
    room: str
    seq: int
    message_id: str


class Ledger:
    """Every message of the run, keyed by its nonce (which starts its text)."""

    def __init__(self) -> None:
        self.created = 0
        self.attempts = 0
        self._sent_at: dict[str, float] = {}
        self.acks: dict[str, AckRecord] = {}
        self._by_seq: dict[tuple[str, int], str] = {}
        #: Acks that contradict an earlier one: a nonce stored twice, a ``seq`` given twice.
        self.conflicts: list[str] = []
        #: The first delivery of each ``(room, seq)``: its message id and nonce.
        self.deliveries: dict[tuple[str, int], tuple[str, str]] = {}
        #: Deliveries of one ``(room, seq)`` that disagree with its first delivery.
        self.mismatches = 0
        self.deliver_ms = array("d")
        self.ack_ms = array("d")

    def attempt(self, key: str) -> float:
        """A publish of ``key`` goes out now; returns the time it left."""
        now = time.monotonic()
        self._sent_at[key] = now
        self.attempts += 1
        return now

    def ack(self, key: str, room: str, seq: int, message_id: str, sent: float) -> None:
        self.ack_ms.append((time.monotonic() - sent) * 1000)
        record = AckRecord(room, seq, message_id)
        prior = self.acks.get(key)
        if prior is not None:
            if prior != record:
                self.conflicts.append(f"nonce {key} acked as {prior} and as {record}")
            return
        other = self._by_seq.setdefault((room, seq), key)
        if other != key:
            self.conflicts.append(f"{room} seq {seq} acked for nonce {other} and for {key}")
        self.acks[key] = record

    def delivered(self, room: str, seq: int, message_id: str, text: str, *, live: bool) -> None:
        """A client received a ``seq`` new to it; ``live`` ones count toward latency."""
        key = text.split(" ", 1)[0]
        first = self.deliveries.setdefault((room, seq), (message_id, key))
        if first != (message_id, key):
            self.mismatches += 1
        if live:
            sent = self._sent_at.get(key)
            if sent is not None:
                self.deliver_ms.append((time.monotonic() - sent) * 1000)

    def acked_by_room(self) -> dict[str, list[int]]:
        """Each room's acked ``seq``, sorted."""
        rooms: dict[str, list[int]] = {}
        for record in self.acks.values():
            rooms.setdefault(record.room, []).append(record.seq)
        for seqs in rooms.values():
            seqs.sort()
        return rooms

    def delivery_disagreements(self) -> int:
        """Deliveries whose message id or text differ from the ack of their ``(room, seq)``."""
        wrong = 0
        for (room, seq), (message_id, key) in self.deliveries.items():
            record = self.acks.get(key)
            if record is not None and record != AckRecord(room, seq, message_id):
                wrong += 1
        return wrong


def percentiles(values: Iterable[float], points: Mapping[str, float]) -> dict[str, float]:
    """``{name: value at fraction}`` of ``values`` (nearest rank), plus ``count`` and ``max``."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    out: dict[str, float] = {"count": len(ordered)}
    for name, fraction in points.items():
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        out[name] = round(ordered[index], 2)
    out["max"] = round(ordered[-1], 2)
    return out
