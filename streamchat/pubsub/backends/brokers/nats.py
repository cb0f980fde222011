"""A broker on NATS core pub/sub: ``nats://host:4222`` (``tls://`` for TLS).

A channel maps to the subject ``<prefix>.<channel>`` (prefix ``pubsub``, URL option
``subject_prefix``), or to a hash of it when the channel holds characters a subject
cannot. The client's own reconnect is off: it would resubscribe silently and lose what
was published meanwhile, so a lost connection closes the client, is reported, and the
PubSub reconnects and recovers from the store. The client PINGs every ``ping_interval``
seconds (URL option, default 5) and gives up after two unanswered PINGs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError

from ..._errors import BrokerError
from .._options import option, pop_options, positive_float
from ..base import Broker
from ._inbox import Inbox

__all__ = ["NatsBroker"]

# What the client library raises for a failed operation; anything else is a bug, raised.
_ERRORS = (NatsError, OSError, TimeoutError)
#: Seconds to connect (and to subscribe again) before the attempt counts as failed.
_CONNECT_TIMEOUT = 3

log = logging.getLogger("streamchat.pubsub")

_PLAIN = re.compile(r"[A-Za-z0-9_:\-]{1,200}")


class NatsBroker(Broker):
    def __init__(
        self, url: str, *, subject_prefix: str | None = None, ping_interval: float | None = None
    ) -> None:
        url, options = pop_options(url, {"subject_prefix", "ping_interval"})
        self._url = url
        self.subject_prefix = subject_prefix or options.get("subject_prefix", "pubsub")
        self.ping_interval = positive_float(
            "ping_interval", option(ping_interval, options, "ping_interval"), 5.0
        )
        self.channels: set[str] = set()
        self._subscriptions: dict[str, NatsSubscription] = {}
        self._client: Client | None = None
        self._inbox = Inbox()

    def subject(self, channel: str) -> str:
        if _PLAIN.fullmatch(channel):
            return f"{self.subject_prefix}.{channel}"
        digest = hashlib.blake2b(channel.encode(), digest_size=16).hexdigest()
        return f"{self.subject_prefix}.~{digest}"

    async def connect(self) -> None:
        self._inbox.reset()
        client = Client()

        # Callbacks of a client we already replaced or closed ourselves are ignored.
        async def on_closed() -> None:
            if self._client is client:
                self._inbox.fail(BrokerError("NATS connection closed"))

        async def on_disconnected() -> None:
            if self._client is client:
                self._inbox.fail(BrokerError("NATS connection lost"))

        async def on_error(exc: Exception) -> None:
            if self._client is not client:
                return
            if isinstance(exc, SlowConsumerError):
                # The client dropped messages: report it like a lost link so they are recovered.
                self._inbox.fail(BrokerError(f"NATS slow consumer: {exc}"))
            else:
                log.warning("pubsub: NATS error: %r", exc)

        self._client = client
        try:
            # nats-py retries a refused first connection on its own (60 times, 2 s apart,
            # whatever allow_reconnect says): one attempt's worth of time is all it gets;
            # the PubSub's reconnect loop does the retrying, with its backoff.
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await client.connect(
                    servers=[self._url],
                    allow_reconnect=False,
                    connect_timeout=_CONNECT_TIMEOUT,
                    ping_interval=self.ping_interval,  # type: ignore[arg-type]
                    max_outstanding_pings=2,
                    closed_cb=on_closed,
                    disconnected_cb=on_disconnected,
                    error_cb=on_error,
                    name="streamchat.pubsub",
                )
            self.max_payload = client.max_payload
            self._subscriptions.clear()
            for channel in self.channels:
                await self._subscribe(client, channel)
            await client.flush(timeout=5)
        except _ERRORS as exc:
            await self.disconnect()
            raise BrokerError(f"cannot connect to NATS: {exc!r}") from exc

    async def _subscribe(self, client: Client, channel: str) -> None:
        self._subscriptions[channel] = await client.subscribe(
            self.subject(channel), cb=self._receive
        )

    async def _receive(self, msg: Msg) -> None:
        self._inbox.put(msg.data)

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        self._subscriptions.clear()
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except _ERRORS as exc:
                log.debug("pubsub: closing NATS failed: %r", exc)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        client = self._client
        if client is None or not client.is_connected:
            raise BrokerError("NATS broker is not connected")
        try:
            if channel not in self._subscriptions:
                await self._subscribe(client, channel)
            # A PING round trip: the server has the subscription when the PONG comes back.
            await client.flush(timeout=5)
        except _ERRORS as exc:
            raise BrokerError(f"NATS subscribe {channel!r} failed: {exc!r}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        subscription = self._subscriptions.pop(channel, None)
        if subscription is None:
            return
        try:
            await subscription.unsubscribe()
        except _ERRORS as exc:
            raise BrokerError(f"NATS unsubscribe {channel!r} failed: {exc!r}") from exc

    async def publish(self, channel: str, data: bytes) -> None:
        client = self._client
        if client is None or not client.is_connected:
            raise BrokerError("NATS broker is not connected")
        try:
            await client.publish(self.subject(channel), data)
        except _ERRORS as exc:
            raise BrokerError(f"NATS publish failed: {exc!r}") from exc

    async def next_published(self) -> bytes:
        data = await self._inbox.get()
        assert data is not None
        return data
