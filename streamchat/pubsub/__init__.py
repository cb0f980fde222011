"""streamchat.pubsub: channels of messages with gapless history, across processes.

A standalone library: it imports nothing else of streamchat. See docs/pubsub.md.
"""

from __future__ import annotations

from ._errors import BrokerError, ConfigurationError, Lagged, PubSubError, StoreError
from ._health import Health, LinkState
from ._message import Message
from ._pubsub import PubSub
from ._subscription import Subscription
from .backends.base import Broker, Store

__all__ = [
    "Broker",
    "BrokerError",
    "ConfigurationError",
    "Health",
    "Lagged",
    "LinkState",
    "Message",
    "PubSub",
    "PubSubError",
    "Store",
    "StoreError",
    "Subscription",
]
