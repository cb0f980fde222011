"""The app's services: one of each, built in its lifespan, used by routes and actions."""

from __future__ import annotations

from dataclasses import dataclass

from streamchat.actors import Cluster
from streamchat.config import Settings
from streamchat.metrics import Metrics
from streamchat.pubsub import PubSub
from streamchat.rooms.service import RoomService
from streamchat.store.database import Database
from streamchat.store.moderation import ModerationStore
from streamchat.store.sessions import SessionStore
from streamchat.store.streamers import StreamerStore
from streamchat.store.users import UserStore
from streamchat.twitch.api import TwitchAPI
from streamchat.ws.endpoint import Gateway
from streamchat.ws.registry import ConnectionRegistry

__all__ = ["Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler may use; built once per app in its lifespan."""

    settings: Settings
    db: Database
    users: UserStore
    sessions: SessionStore
    streamers: StreamerStore
    pubsub: PubSub
    rooms: RoomService
    connections: ConnectionRegistry
    cluster: Cluster
    metrics: Metrics
    moderation: ModerationStore
    #: What the WebSocket endpoint uses of these, with its limits and trusted origins.
    gateway: Gateway
    #: Twitch's OAuth and Helix, when the application's credentials are set.
    twitch: TwitchAPI | None = None
