"""python-socketio 5 peer on uvicorn: the room semantics of streamchat's fan-out benchmark.

    PORT=9200 bench/.peers/venv/bin/python bench/peers/pysocketio/server.py

``subscribe`` enters the client into a room (and acks); ``publish`` emits
``{room, text}`` as a ``message`` event to every client in the room, then acks.
WebSocket transport only, no compression, uvicorn with its defaults (uvloop,
httptools, websockets), one process.
"""

from __future__ import annotations

import os
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(
    async_mode="asgi",
    transports=["websocket"],
    cors_allowed_origins=[],
    http_compression=False,
    compression_threshold=1 << 30,
    logger=False,
    engineio_logger=False,
)
app = socketio.ASGIApp(sio)


@sio.on("subscribe")
async def subscribe(sid: str, room: Any) -> bool:
    if not isinstance(room, str):
        return False
    await sio.enter_room(sid, room)
    return True


@sio.on("publish")
async def publish(sid: str, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    room, text = payload.get("room"), payload.get("text")
    if not isinstance(room, str) or not isinstance(text, str):
        return False
    await sio.emit("message", {"room": room, "text": text}, room=room)
    return True


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "9200")),
        log_level="warning",
        ws_per_message_deflate=False,
    )
