"""Prometheus metrics of one process, served at ``GET /metrics``.

The hot path keeps plain integers (connections, subscriptions, messages
published and delivered) where they are counted anyway; they are read only
when Prometheus scrapes, so counting costs nothing per message. The one
histogram, publish→ack latency, is observed once per stored message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamchat.actors import ActorState, Cluster
from streamchat.pubsub import PubSub
from streamchat.rooms.service import RoomService
from streamchat.store.database import Database

__all__ = ["CONTENT_TYPE", "Metrics"]

log = logging.getLogger("streamchat.http")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Store then broadcast: a millisecond on a quiet SQLite file, longer under a group commit.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(slots=True)
class _Sources:
    pubsub: PubSub
    cluster: Cluster
    db: Database
    #: A server's; a worker has no connections or rooms.
    connections: Callable[[], int] | None
    rooms: RoomService | None


class Metrics(Collector):
    """One registry per app (tests run several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.publish_latency = Histogram(
            "streamchat_publish_ack_seconds",
            "Time from a chat message's publish to its ack: stored, then broadcast.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._sources: _Sources | None = None
        self._database_up = 0.0

    def observe_publish(self, seconds: float) -> None:
        self.publish_latency.observe(seconds)

    def bind(
        self,
        *,
        pubsub: PubSub,
        cluster: Cluster,
        db: Database,
        connections: Callable[[], int] | None = None,
        rooms: RoomService | None = None,
    ) -> None:
        """Tell the metrics where to read their values; done once the services exist."""
        self._sources = _Sources(pubsub, cluster, db, connections, rooms)
        self.registry.register(self)

    async def check_database(self) -> None:
        """Ping the database (at most a second) for ``streamchat_database_up``."""
        if self._sources is None:
            return
        try:
            async with asyncio.timeout(1.0):
                await self._sources.db.ping()
            self._database_up = 1.0
        except Exception as exc:
            log.warning("metrics: the database does not answer: %s", exc)
            self._database_up = 0.0

    async def render(self) -> bytes:
        """The exposition text; checks the database first."""
        await self.check_database()
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        if sources is None:
            return
        yield from self._rooms(sources)
        yield from self._links(sources)
        yield from self._actors(sources)

    def _rooms(self, sources: _Sources) -> Iterator[Metric]:
        rooms = sources.rooms
        if rooms is None or sources.connections is None:
            return
        yield GaugeMetricFamily(
            "streamchat_connections", "Open WebSocket connections.", value=sources.connections()
        )
        yield GaugeMetricFamily(
            "streamchat_subscriptions",
            "Room subscriptions of this process's connections.",
            value=rooms.subscriptions,
        )
        yield GaugeMetricFamily(
            "streamchat_rooms_open",
            "Rooms this process has a feed of.",
            value=rooms.open_rooms,
        )
        yield CounterMetricFamily(
            "streamchat_messages_published",
            "Chat messages stored and published by this process.",
            value=rooms.published,
        )
        yield CounterMetricFamily(
            "streamchat_messages_delivered",
            "Room frames handed to this process's connections.",
            value=rooms.delivered,
        )

    def _links(self, sources: _Sources) -> Iterator[Metric]:
        health = sources.pubsub.health
        yield GaugeMetricFamily(
            "streamchat_broker_up",
            "1 while the broker link is connected and takes broadcasts.",
            value=health.ok,
        )
        yield CounterMetricFamily(
            "streamchat_broker_reconnects",
            "Times the broker link was re-established.",
            value=health.reconnects,
        )
        yield GaugeMetricFamily(
            "streamchat_database_up",
            "1 when the database answered at this scrape.",
            value=self._database_up,
        )

    def _actors(self, sources: _Sources) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "streamchat_actor_restarts", "Restarts of each actor after a crash.", labels=["actor"]
        )
        mailbox = GaugeMetricFamily(
            "streamchat_actor_mailbox",
            "Commands waiting in each actor's mailbox.",
            labels=["actor"],
        )
        state = GaugeMetricFamily(
            "streamchat_actor_state",
            "1 for the state each actor is in, in this process.",
            labels=["actor", "state"],
        )
        for cell in sources.cluster.actors.cells:
            restarts.add_metric([cell.name], cell.restarts)
            info = cell.info()
            mailbox.add_metric([cell.name], info.mailbox)
            for value in ActorState:
                state.add_metric([cell.name, value.value], float(info.state is value))
        yield restarts
        yield mailbox
        yield state
