"""A real server on a loopback port, in the test's event loop, and clients for it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from streamchat.app import create_app, server_options
from streamchat.client import ChatClient, login
from streamchat.config import Settings
from streamchat.services import Services


@dataclass
class LiveServer:
    app: FastAPI
    url: str

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def login(self, twitch_id: str, login_name: str | None = None) -> str:
        return await login(self.url, twitch_id, login_name)

    def connect(
        self, session: str | None = None, **kwargs: Any
    ) -> AbstractAsyncContextManager[ChatClient]:
        return ChatClient.connect(self.url, session, **kwargs)


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = server_options(settings) | {"log_level": "warning"}
    del options["host"], options["port"]
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield LiveServer(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


ServerFactory = Callable[..., AbstractAsyncContextManager[LiveServer]]


@pytest.fixture
def chat_settings(tmp_path: Any) -> Settings:
    # The stream watcher's events would interleave with what tests expect; its own tests
    # turn it on.
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", run_singletons=False
    )


@pytest.fixture
def server_factory(chat_settings: Settings) -> ServerFactory:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return live_server(chat_settings.model_copy(update=overrides))

    return factory


@pytest.fixture
async def server(chat_settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(chat_settings) as server:
        yield server


ROOM = "pixelpaladin"
OTHER_ROOM = "lunatidestv"


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http", "ws", 1) + "/ws"


async def close_code(ws: ClientConnection, wait: float = 20.0) -> int | None:
    """Read until the server closes; return the code it closed with."""
    async with asyncio.timeout(wait):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
