"""The processes of a deployment and the leases of its singleton actors.

Every process writes a row of its own to ``cluster_nodes`` and keeps pushing
its expiry forward; a process that died stops counting once the row expires.
A lease in ``actor_leases`` names the one process that runs a singleton
actor. Taking a lease is one statement: insert it, or take it over when it is
ours already or has expired. Expiry times come from each process's clock, so
the processes' clocks must agree to well within a lease's ttl (NTP does).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Double, case, cast, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.store.database import Database
from streamchat.store.eventsub import EVENTSUB_WINDOW
from streamchat.store.models import (
    ActorLease,
    ClusterNode,
    Deployment,
    EventSubMessage,
    RoomPresence,
    Session,
    utcnow,
)

__all__ = ["ClusterStore", "NodeRecord", "Pruned"]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    id: str
    host: str
    pid: int
    kind: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one clean-up removed."""

    nodes: int
    presence: int
    sessions: int


class ClusterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def deployment_id(self) -> str:
        """The id every process on this database shares; made by the first to ask."""
        dialect = sqlite if self._db.is_sqlite else postgresql
        async with self._db.session() as session:
            found = await session.scalar(select(Deployment.id).order_by(Deployment.created_at))
            if found is not None:
                return found
            await session.execute(
                dialect.insert(Deployment)
                .values(id=secrets.token_hex(6), created_at=utcnow())
                .on_conflict_do_nothing()
            )
        async with self._db.session() as session:
            # Two processes starting at once may each have inserted one: the oldest wins.
            first = await session.scalar(select(Deployment.id).order_by(Deployment.created_at))
        assert first is not None
        return first

    # -- nodes --

    async def heartbeat(self, node: NodeRecord, *, ttl: timedelta) -> None:
        """Record ``node`` as alive for ``ttl`` from now."""
        dialect = sqlite if self._db.is_sqlite else postgresql
        stmt = dialect.insert(ClusterNode).values(
            id=node.id,
            host=node.host,
            pid=node.pid,
            kind=node.kind,
            started_at=node.started_at,
            expires_at=utcnow() + ttl,
        )
        async with self._db.session() as session:
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[ClusterNode.id],
                    set_={"expires_at": stmt.excluded.expires_at},
                )
            )

    async def live_nodes(self) -> list[NodeRecord]:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(ClusterNode)
                .where(ClusterNode.expires_at > utcnow())
                .order_by(ClusterNode.started_at)
            )
            return [NodeRecord(r.id, r.host, r.pid, r.kind, r.started_at) for r in rows]

    async def remove_node(self, node_id: str) -> None:
        async with self._db.session() as session:
            await session.execute(delete(ClusterNode).where(ClusterNode.id == node_id))

    # -- leases --

    def _clock(self) -> ColumnElement[float]:
        """The database's time in UNIX seconds, read when the statement runs (not when it
        started waiting for a lock)."""
        if self._db.is_sqlite:
            return cast((func.julianday("now") - 2440587.5) * 86400.0, Double)
        return cast(func.extract("epoch", func.clock_timestamp()), Double)

    async def acquire(self, name: str, holder: str, *, ttl: float) -> bool:
        """Take lease ``name`` for ``holder``, or renew it; whether ``holder`` holds it now.

        One statement: insert the lease, or take it over when it is ours or has
        expired, by the database's clock at the moment the row is locked.
        """
        dialect = sqlite if self._db.is_sqlite else postgresql
        now = self._clock()
        stmt = dialect.insert(ActorLease).values(
            name=name, holder=holder, acquired_at=now, expires_at=now + ttl, paused=False
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[ActorLease.name],
            set_={
                "holder": stmt.excluded.holder,
                "expires_at": now + ttl,
                # A renewal keeps the time it was first taken.
                "acquired_at": case(
                    (ActorLease.holder == stmt.excluded.holder, ActorLease.acquired_at),
                    else_=now,
                ),
            },
            where=(ActorLease.holder == stmt.excluded.holder) | (ActorLease.expires_at <= now),
        ).returning(ActorLease.holder)
        async with self._db.session() as session:
            return (await session.execute(stmt)).scalar() == holder

    async def release(self, name: str, holder: str) -> None:
        """Let the lease expire now, if ``holder`` has it (the row keeps ``paused``)."""
        async with self._db.session() as session:
            await session.execute(
                update(ActorLease)
                .where(ActorLease.name == name, ActorLease.holder == holder)
                .values(expires_at=self._clock())
            )

    async def holder(self, name: str) -> str | None:
        """The process holding lease ``name`` now, if any."""
        async with self._db.session() as session:
            return await session.scalar(
                select(ActorLease.holder).where(
                    ActorLease.name == name, ActorLease.expires_at > self._clock()
                )
            )

    async def paused(self, name: str) -> bool:
        async with self._db.session() as session:
            return bool(
                await session.scalar(select(ActorLease.paused).where(ActorLease.name == name))
            )

    async def set_paused(self, name: str, paused: bool) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(ActorLease).where(ActorLease.name == name).values(paused=paused)
            )

    # -- clean-up --

    async def prune(self) -> Pruned:
        """Remove what dead processes and old sessions left behind."""
        now = utcnow()
        async with self._db.session() as session:
            nodes = await session.execute(delete(ClusterNode).where(ClusterNode.expires_at <= now))
            presence = await session.execute(
                delete(RoomPresence).where(RoomPresence.expires_at <= now)
            )
            sessions = await session.execute(delete(Session).where(Session.expires_at <= now))
            # Refused as stale anyway once this old: their ids need not be remembered.
            await session.execute(
                delete(EventSubMessage).where(
                    EventSubMessage.received_at <= now - 2 * EVENTSUB_WINDOW
                )
            )
        return Pruned(_count(nodes), _count(presence), _count(sessions))


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
