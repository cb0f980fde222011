"""PresenceJanitor: removes what processes that died left behind."""

from __future__ import annotations

import logging
from typing import ClassVar

from streamchat.actors.runtime import Actor, Command
from streamchat.store.cluster import ClusterStore

__all__ = ["PresenceJanitor", "Sweep"]

log = logging.getLogger("streamchat.actors")


class Sweep(Command, tag="sweep", frozen=True):
    """Sweep now; the reply counts what went."""


class PresenceJanitor(Actor):
    """Every ``interval`` seconds, deletes expired presence rows, node rows and sessions.

    A live process keeps pushing its presence rows' expiry forward; the rows of
    one that was killed stop counting when they expire and are deleted here.
    """

    name: ClassVar[str] = "presence-janitor"
    commands: ClassVar[tuple[type[Command], ...]] = (Sweep,)

    def __init__(self, cluster: ClusterStore, *, interval: float) -> None:
        self.interval = interval
        self._cluster = cluster

    async def tick(self) -> None:
        await self.sweep()

    async def handle(self, command: Command) -> object:
        assert isinstance(command, Sweep)
        return await self.sweep()

    async def sweep(self) -> dict[str, int]:
        pruned = await self._cluster.prune()
        if pruned.presence or pruned.nodes:
            log.info(
                "janitor: removed %d presence row(s) and %d node(s) of dead processes",
                pruned.presence,
                pruned.nodes,
            )
        return {"presence": pruned.presence, "nodes": pruned.nodes, "sessions": pruned.sessions}
