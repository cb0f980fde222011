"""The ASGI application: ``create_app(settings)`` wires stores, routes and middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from streamchat import __version__
from streamchat.config import Settings
from streamchat.http import auth, health, streamers, users
from streamchat.http.deps import Services
from streamchat.http.errors import install_error_handlers
from streamchat.http.origin import OriginCheckMiddleware
from streamchat.store.database import Database
from streamchat.store.sessions import SessionStore
from streamchat.store.streamers import StreamerStore
from streamchat.store.users import UserStore
from streamchat.twitch.sample import sample_streamer_rows

__all__ = ["create_app"]

log = logging.getLogger("streamchat")


async def _start(settings: Settings) -> Services:
    db = Database(settings.database_url)
    try:
        await db.migrate()
        streamer_store = StreamerStore(db)
        if settings.seed_sample_data and await streamer_store.count() == 0:
            written = await streamer_store.upsert(sample_streamer_rows())
            log.info("loaded %d sample streamers into an empty database", written)
    except BaseException:
        await db.close()
        raise
    return Services(
        settings=settings,
        db=db,
        users=UserStore(db),
        sessions=SessionStore(db, ttl=timedelta(seconds=settings.session_ttl_seconds)),
        streamers=streamer_store,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await _start(settings)
        app.state.services = services
        try:
            yield
        finally:
            await services.db.close()

    app = FastAPI(
        title="streamchat",
        version=__version__,
        description="Real-time chat for streamer communities.",
        lifespan=lifespan,
    )
    app.add_middleware(OriginCheckMiddleware, allowed_origins=settings.allowed_origins)
    install_error_handlers(app)
    for module in (health, auth, users, streamers):
        app.include_router(module.router)
    return app
