"""Keeping EventSub subscriptions for every streamer in the catalogue."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streamchat.errors import StreamchatError
from streamchat.twitch.api import TwitchAPI

__all__ = ["SUBSCRIPTIONS", "WEBHOOK_PATH", "EventSubSubscriber"]

log = logging.getLogger("streamchat.twitch")

#: Where Twitch sends the webhooks, under the public URL.
WEBHOOK_PATH = "/api/twitch/eventsub"
#: What streamchat subscribes to for each streamer, and the version of each.
SUBSCRIPTIONS = {"stream.online": "1", "stream.offline": "1", "channel.update": "2"}
#: Subscriptions in these states still deliver, or will once verified.
_ALIVE = {"enabled", "webhook_callback_verification_pending"}


class EventSubSubscriber:
    """Creates the subscriptions that are missing, so Twitch pushes live changes."""

    def __init__(self, api: TwitchAPI, *, callback: str, secret: str) -> None:
        self._api = api
        self.callback = callback
        self._secret = secret

    async def ensure(self, broadcaster_ids: Iterable[str]) -> int:
        """Subscribe every broadcaster to every kind it lacks; return how many were made.

        A failure is logged and ends the round: polling covers what is missing, and
        the next round tries again.
        """
        try:
            existing: set[tuple[str, str | None]] = set()
            for sub in await self._api.eventsub_subscriptions():
                if sub.transport.get("callback") != self.callback:
                    continue
                if sub.status in _ALIVE:
                    existing.add((sub.type, sub.condition.get("broadcaster_user_id")))
                else:
                    # Revoked or failed: it must go before its replacement can be made.
                    log.info("EventSub: removing the %s subscription %s", sub.status, sub.id)
                    await self._api.unsubscribe_eventsub(sub.id)
            made = 0
            for broadcaster in broadcaster_ids:
                for kind, version in SUBSCRIPTIONS.items():
                    if (kind, broadcaster) in existing:
                        continue
                    created = await self._api.subscribe_eventsub(
                        kind, version, broadcaster, callback=self.callback, secret=self._secret
                    )
                    made += created is not None
        except StreamchatError as exc:
            log.warning("EventSub: subscribing failed (%s); polling goes on", exc)
            return 0
        if made:
            log.info("EventSub: %d subscription(s) made", made)
        return made
