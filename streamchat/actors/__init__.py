"""Background work as supervised actors: the runtime, the actors streamchat ships, and their
placement across processes. See docs/actors.md."""

from __future__ import annotations

from streamchat.actors.cluster import Cluster, Node
from streamchat.actors.runtime import (
    Actor,
    ActorCell,
    ActorInfo,
    ActorState,
    ActorSystem,
    Broadcast,
    Command,
    Pause,
    Resume,
)
from streamchat.actors.setup import CATALOG, broker_namespace, running_actors

__all__ = [
    "CATALOG",
    "Actor",
    "ActorCell",
    "ActorInfo",
    "ActorState",
    "ActorSystem",
    "Broadcast",
    "Cluster",
    "Command",
    "Node",
    "Pause",
    "Resume",
    "broker_namespace",
    "running_actors",
]
