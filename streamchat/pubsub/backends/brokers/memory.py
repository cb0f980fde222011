"""A broker inside one process: ``memory://`` or ``memory://name``.

Brokers with the same name in one process share a bus, which lets tests run several
PubSub "nodes" side by side. Nothing crosses a process boundary.
"""

from __future__ import annotations

from ..._errors import BrokerError
from ..base import Broker
from ._inbox import Inbox

__all__ = ["MemoryBroker"]

# name -> the connected brokers of that bus.
_buses: dict[str, set[MemoryBroker]] = {}


class MemoryBroker(Broker):
    def __init__(self, url: str = "memory://") -> None:
        self.name = url.split("://", 1)[1].split("?", 1)[0] if "://" in url else ""
        self.channels: set[str] = set()
        self._inbox = Inbox()
        self._connected = False

    async def connect(self) -> None:
        self._inbox.reset()
        _buses.setdefault(self.name, set()).add(self)
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        bus = _buses.get(self.name)
        if bus is not None:
            bus.discard(self)
            if not bus:
                del _buses[self.name]

    def sever(self) -> None:
        """Break the link as a network failure would (a testing seam)."""
        self._connected = False
        bus = _buses.get(self.name)
        if bus is not None:
            bus.discard(self)
        self._inbox.fail(BrokerError("memory broker link severed"))

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        if not self._connected:
            raise BrokerError("memory broker is not connected")

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)

    async def publish(self, channel: str, data: bytes) -> None:
        if not self._connected:
            raise BrokerError("memory broker is not connected")
        for broker in _buses.get(self.name, ()):
            if channel in broker.channels:
                broker._inbox.put(data)

    async def next_published(self) -> bytes:
        data = await self._inbox.get()
        assert data is not None
        return data
