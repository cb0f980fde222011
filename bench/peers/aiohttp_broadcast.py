"""A bare aiohttp broadcast loop: the floor of what Python fan-out costs.

    PORT=9300 bench/.peers/venv/bin/python bench/peers/aiohttp_broadcast.py

It speaks the subset of streamchat's room protocol the benchmark uses, with
none of its guarantees: ``subscribe`` adds the socket to a room's set,
``publish`` sends a ``message`` frame to each member in turn
(``await ws.send_str``), then an ``ack``. No login, no storage, no outbox, one
process on uvloop.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import uvloop
from aiohttp import WSMsgType, web

_compact = json.JSONEncoder(separators=(",", ":")).encode

rooms: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    joined: set[str] = set()
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            for line in message.data.split("\n"):
                if line:
                    await handle(ws, json.loads(line), joined)
    finally:
        for room in joined:
            rooms[room].discard(ws)
    return ws


async def handle(ws: web.WebSocketResponse, request: dict[str, object], joined: set[str]) -> None:
    room = str(request.get("room"))
    if request.get("type") == "subscribe":
        rooms[room].add(ws)
        joined.add(room)
        await ws.send_str(_compact({"type": "subscribed", "room": room, "id": request.get("id")}))
    elif request.get("type") == "publish":
        frame = _compact({"type": "message", "room": room, "text": request.get("text")})
        for member in list(rooms[room]):
            if not member.closed:
                await member.send_str(frame)
        await ws.send_str(_compact({"type": "ack", "room": room, "id": request.get("id")}))


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", websocket)
    web.run_app(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "9300")),
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
