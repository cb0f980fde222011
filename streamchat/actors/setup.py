"""Which actors a process runs, built from the settings."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from streamchat.actors.cluster import Cluster, DatabaseLease, Node
from streamchat.actors.janitor import PresenceJanitor
from streamchat.actors.retention import Retention
from streamchat.actors.runtime import Actor, ActorSystem
from streamchat.actors.stream_watcher import StreamWatcher
from streamchat.config import Settings
from streamchat.errors import CannotStart
from streamchat.pubsub import PubSub
from streamchat.rooms.events import RoomEvents
from streamchat.store.cluster import ClusterStore
from streamchat.store.database import Database
from streamchat.store.streamers import StreamerStore
from streamchat.twitch.api import TwitchAPI
from streamchat.twitch.eventsub import WEBHOOK_PATH, EventSubSubscriber
from streamchat.twitch.schedule import SampleSchedule
from streamchat.twitch.source import HelixSource, StreamSource

__all__ = ["CATALOG", "SINGLETONS", "broker_namespace", "running_actors"]

log = logging.getLogger("streamchat.actors")

#: Every actor streamchat ships, by name.
CATALOG: Final[dict[str, type[Actor]]] = {
    actor.name: actor for actor in (StreamWatcher, Retention, PresenceJanitor)
}
#: The actors that ``serve --no-workers`` leaves to ``streamchat worker``.
SINGLETONS: Final = (StreamWatcher.name, Retention.name)

#: Seconds a process gives its actors to stop at shutdown before cancelling them.
STOP_DEADLINE: Final = 5.0


async def broker_namespace(settings: Settings, db: Database) -> str:
    """Every process on one database shares a namespace on the broker; others don't."""
    if settings.broker_namespace is not None:
        return settings.broker_namespace
    return f"sc.{await ClusterStore(db).deployment_id()}:"


@dataclass(frozen=True, slots=True)
class StreamFeed:
    """Where the stream watcher learns who is live, and who keeps Twitch pushing changes."""

    source: StreamSource
    eventsub: EventSubSubscriber | None = None


@asynccontextmanager
async def stream_feed(settings: Settings) -> AsyncIterator[StreamFeed]:
    """Twitch (polled, plus EventSub with a secret and an https public URL), or the
    sample schedule."""
    if settings.stream_source == "sample":
        yield StreamFeed(SampleSchedule(seed=settings.watch_seed, speed=settings.watch_speed))
        return
    api = TwitchAPI.from_settings(settings)
    if api is None:  # Settings.twitch_problems() names what is missing
        raise CannotStart("the helix stream source needs STREAMCHAT_TWITCH_CLIENT_ID and _SECRET")
    eventsub = None
    secret, public_url = settings.twitch_eventsub_secret, settings.public_url or ""
    if secret is not None and public_url.startswith("https://"):
        eventsub = EventSubSubscriber(
            api, callback=f"{public_url}{WEBHOOK_PATH}", secret=secret.get_secret_value()
        )
    try:
        yield StreamFeed(HelixSource(api), eventsub)
    finally:
        await api.close()


@asynccontextmanager
async def running_actors(
    settings: Settings,
    node: Node,
    db: Database,
    pubsub: PubSub,
    *,
    singletons: bool,
) -> AsyncIterator[Cluster]:
    """Start this process's actors and its membership of the cluster; stop them on exit.

    Every actor is leased: it runs in one process of the deployment at a time,
    and stands by in the others. The presence janitor is a candidate
    everywhere; with ``singletons`` so are the stream watcher and retention.
    """
    async with contextlib.AsyncExitStack() as stack:
        feed = await stack.enter_async_context(stream_feed(settings)) if singletons else None
        async with _actors(settings, node, db, pubsub, feed) as cluster:
            yield cluster


@asynccontextmanager
async def _actors(
    settings: Settings, node: Node, db: Database, pubsub: PubSub, feed: StreamFeed | None
) -> AsyncIterator[Cluster]:
    cluster_store = ClusterStore(db)
    streamers = StreamerStore(db)
    events = RoomEvents(pubsub)
    system = ActorSystem()

    def lease(actor: type[Actor]) -> DatabaseLease:
        return DatabaseLease(cluster_store, actor.name, node.id, ttl=settings.actor_lease_seconds)

    system.add(
        PresenceJanitor,
        lambda: PresenceJanitor(cluster_store, interval=settings.janitor_interval),
        lease=lease(PresenceJanitor),
    )
    if feed is not None:
        system.add(
            StreamWatcher,
            lambda: StreamWatcher(
                streamers,
                feed.source,
                events,
                interval=settings.watch_interval,
                eventsub=feed.eventsub,
            ),
            lease=lease(StreamWatcher),
        )
        system.add(
            Retention,
            lambda: Retention(
                pubsub,
                days=settings.retention_days,
                max_messages=settings.retention_max_messages,
                interval=settings.retention_interval,
            ),
            lease=lease(Retention),
        )
    cluster = Cluster(node, system, cluster_store, pubsub, catalog=CATALOG)
    await cluster.start()
    system.start()
    await system.placed()
    try:
        yield cluster
    finally:
        outcome = await system.stop(STOP_DEADLINE)
        log.info(
            "actors stopped: %s",
            ", ".join(
                f"{name} ({'clean' if clean else 'cancelled'})" for name, clean in outcome.items()
            ),
        )
        await cluster.close()
