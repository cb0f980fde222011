"""A small HTTP/1.1 server on a loopback port, for the fake Twitch.

Written on h11 (the HTTP/1.1 state machine httpx itself uses) rather than served by
uvicorn, because a fake that injects faults must be able to do what an ASGI app cannot:
close a connection before a single byte of the response, or answer a request late while
the connection stays open. A handler returns a :class:`Response`, or ``None`` to hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import httpx

__all__ = ["HttpServer", "Request", "Response", "json_response"]

_READ_SIZE = 65536


@dataclass(frozen=True)
class Request:
    """One request as it arrived: what the handlers read and the fake records."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: httpx.Headers
    body: bytes
    #: Seconds since the epoch, when the request was complete.
    received_at: float

    @property
    def form(self) -> dict[str, list[str]]:
        """The body as ``application/x-www-form-urlencoded`` fields (empty for any other
        content type)."""
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}
        return parse_qs(self.body.decode("latin-1"), keep_blank_values=True)

    @property
    def json(self) -> Any:
        """The body decoded as JSON; ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def param(self, name: str) -> str | None:
        """A query parameter's first value."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    out = {"Content-Type": "application/json"}
    out.update(headers or {})
    return Response(status, body, out)


Handler = Callable[[Request], Awaitable[Response | None]]


class HttpServer:
    """Serves ``handler`` on ``127.0.0.1`` at a port the OS chose, bound before it listens."""

    def __init__(self, handler: Handler, clock: Callable[[], float]) -> None:
        self._handler = handler
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("The server is already started.")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._connection, sock=sock)

    async def close(self) -> None:
        """Stop listening and end every open connection, including requests still held
        by a slow fault."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        self.port = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The work runs in a task of its own so that close() can cancel it without the
        # cancellation escaping to asyncio's stream callback, which would log it.
        serving = asyncio.create_task(self._serve(reader, writer))
        self._connections.add(serving)
        try:
            await serving
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            self._connections.discard(serving)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read(conn, reader)
                if request is None:
                    break
                response = await self._handler(request)
                if response is None:
                    break
                writer.write(self._encode(conn, request, response))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            # The client went away or spoke something that is not HTTP/1.1: nothing to
            # answer, the connection just ends.
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ_SIZE))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                target = urlsplit(head.target.decode("latin-1"))
                return Request(
                    method=head.method.decode("ascii"),
                    path=target.path,
                    query=parse_qs(target.query, keep_blank_values=True),
                    headers=httpx.Headers([(k.decode(), v.decode()) for k, v in head.headers]),
                    body=bytes(body),
                    received_at=self._clock(),
                )
            else:
                # ConnectionClosed, or PAUSED (never reached: a response is always sent
                # before the next cycle starts).
                return None

    def _encode(self, conn: h11.Connection, request: Request, response: Response) -> bytes:
        """The whole answer in one buffer: written in pieces, the body would wait for the
        client's delayed ACK of the head (Nagle), some 40 ms a request."""
        headers = dict(response.headers)
        if response.status != 204:
            headers["Content-Length"] = str(len(response.body))
        head = h11.Response(status_code=response.status, headers=list(headers.items()))
        out = conn.send(head) or b""
        if response.body and response.status not in (204, 304) and request.method != "HEAD":
            out += conn.send(h11.Data(data=response.body)) or b""
        return out + (conn.send(h11.EndOfMessage()) or b"")
