"""Actors across processes: who this process is, leases in the database, commands over the broker.

Every process (a server or a worker) is a :class:`Node`. It writes a heartbeat
row to the database, and listens on one control channel of the broker,
:data:`CONTROL_CHANNEL`, for three things:

- ``ask``: a command for an actor that this node runs, relayed from the node
  where the HTTP request arrived. The answer goes back on the same channel,
  addressed to the asking node;
- ``list``: every node answers with the state of its actors, so any node can
  show the whole deployment's;
- ``broadcast``: an operator's message, told to every actor active anywhere.

The singleton actors are placed by leases (:class:`DatabaseLease`): the node
holding an actor's lease runs it, so a command for it is addressed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from streamchat.actors.runtime import Actor, ActorInfo, ActorSystem, Broadcast, parse_command
from streamchat.background import Background
from streamchat.errors import (
    ActorTimeout,
    ActorUnavailable,
    StreamchatError,
    UnknownActor,
    error_from,
)
from streamchat.pubsub import Message, PubSub, PubSubError
from streamchat.store.cluster import ClusterStore, NodeRecord
from streamchat.store.models import utcnow

__all__ = ["CONTROL_CHANNEL", "Cluster", "DatabaseLease", "Node", "lease_name"]

log = logging.getLogger("streamchat.actors")

_T = TypeVar("_T")

#: The broker channel every node listens to for actor commands, listings and broadcasts.
CONTROL_CHANNEL = "control:actors"


@dataclass(frozen=True, slots=True)
class Node:
    """One streamchat process."""

    id: str
    host: str
    pid: int
    #: ``server`` or ``worker``.
    kind: str
    started_at: datetime = field(default_factory=utcnow)

    @classmethod
    def here(cls, kind: str) -> Node:
        return cls(str(uuid.uuid4()), socket.gethostname(), os.getpid(), kind)

    def record(self) -> NodeRecord:
        return NodeRecord(self.id, self.host, self.pid, self.kind, self.started_at)


def lease_name(actor: str) -> str:
    return f"actor:{actor}"


class DatabaseLease:
    """An actor's lease in the ``actor_leases`` table, held by one node."""

    def __init__(self, store: ClusterStore, actor: str, node_id: str, *, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._store = store
        self._name = lease_name(actor)
        self._node_id = node_id

    async def acquire(self) -> bool:
        return await _unbroken(self._store.acquire(self._name, self._node_id, ttl=self.ttl))

    async def release(self) -> None:
        await _unbroken(self._store.release(self._name, self._node_id))

    async def paused(self) -> bool:
        return await _unbroken(self._store.paused(self._name))

    async def set_paused(self, paused: bool) -> None:
        await _unbroken(self._store.set_paused(self._name, paused))


_unfinished: set[asyncio.Task[Any]] = set()


async def _unbroken(work: Coroutine[Any, Any, _T]) -> _T:
    """Await ``work``; if the caller is cancelled (a timeout, a stop), let the statement end.

    A database call cut off in the middle can leave its connection neither
    returned to the pool nor closed.
    """
    task = asyncio.ensure_future(work)
    _unfinished.add(task)
    task.add_done_callback(_settled)
    return await asyncio.shield(task)


def _settled(task: asyncio.Task[Any]) -> None:
    _unfinished.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: whoever gave up waiting has already moved on


# -- the wire --------------------------------------------------------------------------


class _NodeRef(msgspec.Struct, frozen=True):
    id: str
    host: str
    pid: int
    kind: str


class _Entry(msgspec.Struct, frozen=True):
    """One actor of one node, as the admin API shows it."""

    name: str
    state: str
    #: None for an actor that no live process runs.
    node: _NodeRef | None
    mailbox: int
    restarts: int
    last_error: str | None
    #: ISO 8601, UTC.
    last_error_at: str | None
    restart_in: float | None


class _Error(msgspec.Struct, frozen=True):
    code: str
    message: str


class _Ask(msgspec.Struct, tag="ask", frozen=True):
    id: str
    origin: str
    to: str
    actor: str
    command: str
    args: dict[str, Any]
    timeout: float


class _List(msgspec.Struct, tag="list", frozen=True):
    id: str
    origin: str


class _Broadcast(msgspec.Struct, tag="broadcast", frozen=True):
    text: str


class _Reply(msgspec.Struct, tag="reply", frozen=True):
    id: str
    to: str
    node: _NodeRef
    result: Any = None
    error: _Error | None = None
    actors: list[_Entry] | None = None


_Frame = _Ask | _List | _Broadcast | _Reply
_decoder = msgspec.json.Decoder(_Frame)
_encode = msgspec.json.Encoder().encode


def _entry(info: ActorInfo, node: _NodeRef) -> _Entry:
    at = info.last_error_at
    return _Entry(
        info.name,
        str(info.state),
        node,
        info.mailbox,
        info.restarts,
        info.last_error,
        datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None,
        info.restart_in,
    )


# -- the node's membership -------------------------------------------------------------


class Cluster:
    """This process as a member of the deployment: its heartbeat, and actors addressed anywhere."""

    def __init__(
        self,
        node: Node,
        actors: ActorSystem,
        store: ClusterStore,
        pubsub: PubSub,
        *,
        catalog: Mapping[str, type[Actor]],
        heartbeat: float = 5.0,
        node_ttl: float = 15.0,
        ask_timeout: float = 10.0,
        list_timeout: float = 1.0,
    ) -> None:
        self.node = node
        self.actors = actors
        self._store = store
        self._pubsub = pubsub
        self._catalog = catalog
        self._heartbeat = heartbeat
        self._node_ttl = timedelta(seconds=node_ttl)
        self._ask_timeout = ask_timeout
        self._list_timeout = list_timeout
        self._ref = _NodeRef(node.id, node.host, node.pid, node.kind)
        self._waiting: dict[str, asyncio.Future[_Reply]] = {}
        self._listings: dict[str, list[_Reply]] = {}
        self._listing_done: dict[str, Callable[[], None]] = {}
        self._background = Background()

    # -- life cycle --

    async def start(self) -> None:
        """Join: the first heartbeat and the control channel are live when this returns."""
        try:
            await self._store.heartbeat(self.node.record(), ttl=self._node_ttl)
        except Exception as exc:
            # The heartbeat loop keeps trying; a node must start without its database.
            log.warning("cluster: first heartbeat failed: %s", exc)
        listening = asyncio.Event()
        self._background.start(
            self._pubsub.listen(CONTROL_CHANNEL, self._receive, ready=listening), "cluster-listen"
        )
        self._background.start(self._beat(), "cluster-heartbeat")
        try:
            async with asyncio.timeout(10):
                await listening.wait()
        except TimeoutError:
            log.warning("cluster: not yet listening on %s; the broker is slow", CONTROL_CHANNEL)

    async def close(self) -> None:
        await self._background.close()
        try:
            await self._store.remove_node(self.node.id)
        except Exception as exc:
            log.warning("cluster: could not remove this node's row (%s); it expires", exc)
        # Lease statements left to finish on their own must end before the database closes.
        if _unfinished:
            await asyncio.wait(set(_unfinished), timeout=5)

    async def _beat(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._heartbeat if not failures else min(self._heartbeat, 1.0))
            try:
                await self._store.heartbeat(self.node.record(), ttl=self._node_ttl)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("cluster: heartbeat failed (%d): %s", failures, exc)

    def _receive(self, message: Message) -> None:
        try:
            frame = _decoder.decode(message.payload)
        except msgspec.DecodeError as exc:
            log.warning("cluster: dropped a malformed control message: %s", exc)
            return
        match frame:
            case _Reply(to=to) if to == self.node.id:
                self._on_reply(frame)
            case _Ask(to=to) if to == self.node.id:
                self._background.start(self._answer(frame), "cluster-answer")
            case _List():
                self._background.start(self._answer_list(frame), "cluster-list")
            case _Broadcast(text=text):
                self.actors.tell_active(Broadcast(text=text))

    def _on_reply(self, reply: _Reply) -> None:
        if (waiter := self._waiting.pop(reply.id, None)) is not None:
            if not waiter.done():
                waiter.set_result(reply)
            return
        if (replies := self._listings.get(reply.id)) is not None:
            replies.append(reply)
            self._listing_done[reply.id]()

    async def _send(self, frame: _Frame) -> None:
        try:
            await self._pubsub.publish(CONTROL_CHANNEL, _encode(frame), store=False)
        except PubSubError as exc:
            raise ActorUnavailable(f"the broker is unreachable: {exc}") from exc

    async def _answer(self, ask: _Ask) -> None:
        try:
            result = await self._ask_here(ask.actor, ask.command, ask.args, ask.timeout)
            reply = _Reply(ask.id, ask.origin, self._ref, result=result)
        except StreamchatError as exc:
            reply = _Reply(ask.id, ask.origin, self._ref, error=_Error(exc.code, exc.message))
        except Exception as exc:
            log.exception("cluster: answering %s %s failed", ask.actor, ask.command)
            error = _Error("actor_crashed", f"{type(exc).__name__}: {exc}")
            reply = _Reply(ask.id, ask.origin, self._ref, error=error)
        try:
            await self._send(reply)
        except StreamchatError as exc:
            log.warning("cluster: could not reply to %s: %s", ask.origin, exc)

    async def _answer_list(self, request: _List) -> None:
        reply = _Reply(request.id, request.origin, self._ref, actors=self._entries())
        try:
            await self._send(reply)
        except StreamchatError as exc:
            log.warning("cluster: could not answer a listing: %s", exc)

    def _entries(self) -> list[_Entry]:
        return [_entry(cell.info(), self._ref) for cell in self.actors.cells]

    # -- what the admin API uses --

    def actor_type(self, name: str) -> type[Actor]:
        actor = self._catalog.get(name)
        if actor is None:
            known = ", ".join(sorted(self._catalog))
            shown = name if len(name) <= 64 else name[:64] + "…"
            raise UnknownActor(f"no actor {shown!r}; the actors are: {known}")
        return actor

    async def command(self, actor: str, command: str, args: object) -> object:
        """Run ``command`` on ``actor`` wherever it runs; return its reply (JSON-able)."""
        parse_command(self.actor_type(actor), command, args)  # 404 or 422 before anything moves
        assert isinstance(args, dict) or args is None
        if actor in self.actors and self.actors.cell(actor).active:
            return await self._ask_here(actor, command, args or {}, self._ask_timeout)
        try:
            holder = await self._store.holder(lease_name(actor))
        except Exception as exc:
            log.warning("cluster: reading the lease of %s failed: %s", actor, exc)
            raise ActorUnavailable(
                f"cannot tell which process runs {actor}: the database is unreachable"
            ) from exc
        if holder is None:
            raise ActorUnavailable(f"no process runs {actor} now; start `streamchat worker`")
        if holder == self.node.id:
            # Taken by this node a moment ago, or lost a moment ago.
            raise ActorUnavailable(f"{actor} is changing hands; try again")
        request_id = uuid.uuid4().hex
        waiter: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            # The holder gives up a little earlier, so that its answer (a timeout) makes it back.
            remote_wait = max(0.5, self._ask_timeout - 0.5)
            await self._send(
                _Ask(request_id, self.node.id, holder, actor, command, args or {}, remote_wait)
            )
            try:
                async with asyncio.timeout(self._ask_timeout):
                    reply = await waiter
            except TimeoutError:
                raise ActorTimeout(
                    f"{actor} (in process {holder}) did not answer within {self._ask_timeout:g} s"
                ) from None
        finally:
            self._waiting.pop(request_id, None)
        if reply.error is not None:
            raise error_from(reply.error.code, reply.error.message)
        return reply.result

    async def _ask_here(
        self, actor: str, command: str, args: dict[str, Any], wait: float
    ) -> object:
        typed = parse_command(self.actor_type(actor), command, args)
        if actor not in self.actors:
            raise ActorUnavailable(f"{actor} does not run in this process")
        reply = await self.actors.cell(actor).ask(typed, wait=wait)
        return msgspec.to_builtins(reply)

    async def listing(self) -> dict[str, Any]:
        """Every actor of every live node, and the nodes, for ``GET /api/admin/actors``."""
        try:
            nodes = await self._store.live_nodes()
        except Exception as exc:
            log.warning("cluster: reading the nodes failed: %s", exc)
            nodes = []
        replies: dict[str, _Reply] = {
            self.node.id: _Reply("", self.node.id, self._ref, actors=self._entries())
        }
        others = {node.id for node in nodes} - {self.node.id}
        if others:
            request_id = uuid.uuid4().hex
            collected: list[_Reply] = []
            everyone = asyncio.Event()

            def check() -> None:
                if others <= {reply.node.id for reply in collected}:
                    everyone.set()

            self._listings[request_id] = collected
            self._listing_done[request_id] = check
            try:
                await self._send(_List(request_id, self.node.id))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._list_timeout):
                        await everyone.wait()
            except StreamchatError as exc:
                log.warning("cluster: listing only this node: %s", exc)
            finally:
                self._listings.pop(request_id, None)
                self._listing_done.pop(request_id, None)
            for reply in collected:
                replies.setdefault(reply.node.id, reply)
        entries = [entry for reply in replies.values() for entry in reply.actors or ()]
        # An actor that no live process runs or stands by for is listed too, stopped,
        # so that its absence shows.
        listed = {entry.name for entry in entries}
        entries += [
            _Entry(name, "stopped", None, 0, 0, None, None, None)
            for name in self._catalog
            if name not in listed
        ]
        entries.sort(key=lambda e: (e.name, e.state not in ("running", "paused", "restarting")))
        known = {node.id: node for node in nodes}
        known.setdefault(self.node.id, self.node.record())
        return {
            "actors": msgspec.to_builtins(entries),
            "nodes": [
                {
                    "id": node.id,
                    "host": node.host,
                    "pid": node.pid,
                    "kind": node.kind,
                    "started_at": node.started_at.isoformat(),
                    "answered": node.id in replies,
                }
                for node in known.values()
            ],
        }

    async def broadcast(self, text: str) -> None:
        """Tell every actor active on any node (this one included, through the broker)."""
        await self._send(_Broadcast(text))
