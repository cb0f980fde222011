"""The ASGI application: ``create_app(settings)`` wires stores, rooms, routes and middleware."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, WebSocket
from starlette.types import Receive, Scope, Send

from streamchat import __version__, actions
from streamchat.actors import Node, broker_namespace, running_actors
from streamchat.background import Background
from streamchat.config import Settings
from streamchat.errors import CannotStart
from streamchat.http import (
    admin,
    auth,
    eventsub,
    health,
    metrics,
    oauth,
    rooms,
    streamers,
    users,
    web,
)
from streamchat.http.access import AccessMiddleware
from streamchat.http.errors import install_error_handlers
from streamchat.http.limits import BodyLimitMiddleware
from streamchat.http.origin import OriginCheckMiddleware
from streamchat.http.throttle import Throttles
from streamchat.metrics import Metrics
from streamchat.protocol import Moderate, UserRef
from streamchat.pubsub import PubSub
from streamchat.rooms.moderation import LocalSenders, Senders, SharedSenders
from streamchat.rooms.presence import PresenceTracker
from streamchat.rooms.service import RoomLimits, RoomService
from streamchat.services import Services
from streamchat.store.database import Database, chat_store
from streamchat.store.moderation import ModerationStore
from streamchat.store.presence import PresenceStore
from streamchat.store.sessions import SessionStore
from streamchat.store.streamers import StreamerStore
from streamchat.store.users import UserStore
from streamchat.twitch.api import TwitchAPI
from streamchat.twitch.sample import sample_streamer_rows
from streamchat.ws import endpoint
from streamchat.ws.connection import ConnectionLimits
from streamchat.ws.registry import ConnectionRegistry

__all__ = ["create_app", "server_options"]

log = logging.getLogger("streamchat")

_GC_THRESHOLDS = (50_000, 20, 20)


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[Services]:
    """Everything the app needs, started in order and stopped in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        if problems := settings.twitch_problems():
            raise CannotStart("; ".join(problems))
        db = Database(settings.database_url, statement_timeout=settings.db_statement_timeout)
        stack.push_async_callback(db.close)
        await db.migrate()
        streamer_store = StreamerStore(db)
        if settings.seed_sample_data and await streamer_store.count() == 0:
            written = await streamer_store.upsert(sample_streamer_rows())
            log.info("loaded %d sample streamers into an empty database", written)

        pubsub = PubSub(
            broker=settings.broker_url,
            store=chat_store(settings),
            namespace=await broker_namespace(settings, db),
        )
        store_url = settings.chat_store_url
        if not settings.broker_url.startswith("memory:") and store_url.startswith(
            ("memory:", "sqlite")
        ):
            # Each process would number the room's messages on its own.
            log.warning(
                "broker %s joins several processes, but the chat store (%s) is not shared "
                "between machines: use PostgreSQL for STREAMCHAT_STORE_URL/DATABASE_URL",
                settings.broker_url.split("://", 1)[0],
                store_url.split("://", 1)[0],
            )
        await pubsub.connect()
        stack.push_async_callback(pubsub.disconnect)

        sessions = SessionStore(
            db,
            ttl=timedelta(seconds=settings.session_ttl_seconds),
            max_per_user=settings.max_sessions_per_user,
        )
        stack.push_async_callback(sessions.close)
        node = Node.here("server")
        presence = PresenceTracker(PresenceStore(db), node_id=node.id)
        stack.push_async_callback(presence.close)
        metrics = Metrics()
        moderation = ModerationStore(db)
        # Several processes count each user's messages together, in the shared database.
        shared = not settings.broker_url.startswith("memory:") and not db.is_sqlite
        senders: Senders = SharedSenders(db) if shared else LocalSenders()
        stack.push_async_callback(senders.close)
        room_service = RoomService(
            pubsub,
            streamer_store,
            presence,
            moderation=moderation,
            senders=senders,
            limits=RoomLimits(
                enabled=settings.rate_limit,
                announce_presence_at_most=settings.presence_announce_limit,
            ),
            flush_interval=settings.ws_flush_interval,
            on_sent=metrics.observe_publish,
        )
        stack.push_async_callback(room_service.close)
        twitch = TwitchAPI.from_settings(settings)
        if twitch is not None:
            stack.push_async_callback(twitch.close)
        connections = ConnectionRegistry(
            pubsub, sessions, recheck_interval=settings.session_recheck_seconds
        )

        background = Background()
        stack.push_async_callback(background.close)
        background.start(presence.run(), "presence")
        background.start(connections.listen(), "sessions-ended")
        background.start(connections.recheck(), "sessions-recheck")
        background.start(room_service.listen_broadcasts(), "room-broadcasts")
        background.start(room_service.listen_directory(), "streamer-directory")
        background.start(room_service.rules.listen(), "room-rules")
        background.start(room_service.announce_presence(), "presence-notices")

        cluster = await stack.enter_async_context(
            running_actors(settings, node, db, pubsub, singletons=settings.run_singletons)
        )
        metrics.bind(
            connections=connections.__len__,
            rooms=room_service,
            pubsub=pubsub,
            cluster=cluster,
            db=db,
        )

        # Thousands of long-lived connections make every full garbage collection
        # walk them all: a pause that shows up as latency. Objects made at start
        # never die, so freeze them; and collect the young generation less often.
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)
        stack.callback(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(*_GC_THRESHOLDS)

        services: Services

        async def moderate(user: UserRef | None, request: Moderate) -> dict[str, Any]:
            return await actions.moderate(services, user, request.room, request)

        services = Services(
            settings=settings,
            db=db,
            users=UserStore(db),
            sessions=sessions,
            streamers=streamer_store,
            pubsub=pubsub,
            rooms=room_service,
            connections=connections,
            cluster=cluster,
            metrics=metrics,
            gateway=endpoint.Gateway(
                sessions=sessions,
                rooms=room_service,
                connections=connections,
                limits=ConnectionLimits(
                    max_subscriptions=settings.max_subscriptions,
                    max_queued_bytes=settings.ws_max_queued_bytes,
                    max_requests_per_frame=settings.ws_max_requests_per_frame,
                    requests_per_second=settings.ws_requests_per_second
                    if settings.rate_limit
                    else None,
                    max_per_ip=settings.max_connections_per_ip,
                    max_per_user=settings.max_connections_per_user,
                ),
                allowed_origins=frozenset(o.lower() for o in settings.allowed_origins),
                moderate=moderate,
            ),
            twitch=twitch,
            moderation=moderation,
        )
        yield services


class StreamchatApp(FastAPI):
    """FastAPI, with the chat WebSocket taken before the HTTP middleware.

    The middleware (error pages, the Origin check for forms, routing) serves
    HTTP; a WebSocket stays open for hours, and every coroutine it holds open
    on the way in costs memory for as long. The endpoint does its own Origin
    check.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == endpoint.PATH:
            scope["app"] = self
            await endpoint.websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(settings) as services:
            app.state.services = services
            app.state.throttles = Throttles(settings)
            app.state.gateway = services.gateway
            yield

    app = StreamchatApp(
        title="streamchat",
        version=__version__,
        description="Real-time chat for streamer communities.",
        lifespan=lifespan,
    )
    app.add_middleware(OriginCheckMiddleware, allowed_origins=settings.allowed_origins)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body)
    # Outermost: every response, errors included, carries the request id.
    app.add_middleware(AccessMiddleware)
    install_error_handlers(app)
    for module in (health, metrics, auth, oauth, users, streamers, rooms, admin, eventsub, web):
        app.include_router(module.router)
    app.mount(web.STATIC_PATH, web.static_files(), name="static")
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for these settings (``streamchat serve`` and the tests use them)."""
    from streamchat.http.protocol import with_request_timeout
    from streamchat.ws.transport import PROTOCOL_CLASS

    return {
        "http": with_request_timeout(settings.http_request_timeout),
        "ws": PROTOCOL_CLASS,
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        # X-Forwarded-For is believed from the configured proxies only: from anyone
        # else it would let a client pick the address its limits are counted under.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies or None,
        "ws_max_size": settings.ws_max_message_size,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "ws_per_message_deflate": settings.ws_compression,
    }
