"""Twitch EventSub webhooks: ``POST /api/twitch/eventsub``.

A message is believed only when its ``Twitch-Eventsub-Message-Signature`` is
the HMAC-SHA256, keyed with ``STREAMCHAT_TWITCH_EVENTSUB_SECRET``, of its id,
timestamp and raw body (compared in constant time), when it is at most ten
minutes old, and the first time its id is seen. Then:

* ``webhook_callback_verification``: answered with the challenge, as text;
* ``revocation``: logged (polling carries on);
* ``notification`` of ``stream.online``, ``stream.offline`` or
  ``channel.update``: handed to the stream watcher, which records and
  announces it as it does what polling finds, so a change is announced once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from streamchat.actors import Cluster
from streamchat.errors import (
    ActorTimeout,
    InvalidInput,
    InvalidSignature,
    NotFound,
    PayloadTooLarge,
    StreamchatError,
    Unavailable,
)
from streamchat.http.deps import ServicesDep
from streamchat.http.errors import error_responses
from streamchat.store.eventsub import EVENTSUB_WINDOW, EventSubLog
from streamchat.twitch.eventsub import SUBSCRIPTIONS, WEBHOOK_PATH

__all__ = ["router"]

log = logging.getLogger("streamchat.twitch")


router = APIRouter(tags=["twitch"])

_FRACTION = re.compile(r"(\.\d{6})\d+")


class _Subscription(msgspec.Struct):
    type: str
    status: str = ""


class _Event(msgspec.Struct):
    broadcaster_user_id: str
    started_at: str | None = None
    title: str | None = None
    category_id: str | None = None
    category_name: str | None = None
    language: str | None = None


class _Body(msgspec.Struct):
    subscription: _Subscription
    challenge: str | None = None
    event: _Event | None = None


@router.post(
    WEBHOOK_PATH,
    status_code=204,
    responses={
        200: {"description": "The challenge of a `webhook_callback_verification`, as text."},
        **error_responses(
            InvalidSignature, NotFound, InvalidInput, PayloadTooLarge, Unavailable, ActorTimeout
        ),
    },
)
async def eventsub(request: Request, services: ServicesDep) -> Response:
    """Receive an EventSub webhook from Twitch."""
    secret = services.settings.twitch_eventsub_secret
    if secret is None:
        raise NotFound("EventSub is not enabled here (STREAMCHAT_TWITCH_EVENTSUB_SECRET)")
    headers = request.headers
    message_id = headers.get("twitch-eventsub-message-id", "")
    timestamp = headers.get("twitch-eventsub-message-timestamp", "")
    signature = headers.get("twitch-eventsub-message-signature", "")
    kind = headers.get("twitch-eventsub-message-type", "")
    body = await request.body()
    expected = hmac.new(
        secret.get_secret_value().encode(),
        message_id.encode() + timestamp.encode() + body,
        hashlib.sha256,
    ).hexdigest()
    if not message_id or not hmac.compare_digest(f"sha256={expected}", signature):
        raise InvalidSignature("the EventSub signature does not match")
    sent_at = _parse_time(timestamp)
    if sent_at is None or abs(datetime.now(UTC) - sent_at) > EVENTSUB_WINDOW:
        raise InvalidSignature("the EventSub message is older than 10 minutes (or from the future)")
    try:
        message = msgspec.json.decode(body, type=_Body)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"not an EventSub message: {exc}") from None

    seen = EventSubLog(services.db)
    if not await seen.first_time(message_id[:100]):
        log.info("EventSub message %s was handled before; not again", message_id)
        return Response(status_code=204)
    try:
        return await _handle(services.cluster, kind, message)
    except BaseException:
        # Not handled: Twitch's retry of it must be.
        await seen.forget(message_id[:100])
        raise


async def _handle(cluster: Cluster, kind: str, message: _Body) -> Response:
    subscription = message.subscription
    if kind == "webhook_callback_verification":
        if not message.challenge:
            raise InvalidInput("a verification without a challenge")
        log.info("EventSub: verified the subscription to %s", subscription.type)
        return Response(message.challenge, media_type="text/plain", status_code=200)
    if kind == "revocation":
        log.warning(
            "EventSub: Twitch revoked the subscription to %s (%s); polling goes on",
            subscription.type,
            subscription.status,
        )
        return Response(status_code=204)
    if kind != "notification":
        raise InvalidInput(f"unknown EventSub message type {kind!r}")
    event = message.event
    if subscription.type not in SUBSCRIPTIONS or event is None:
        log.info("EventSub: ignored a %s notification", subscription.type)
        return Response(status_code=204)
    args: dict[str, Any] = {
        "broadcaster_id": event.broadcaster_user_id,
        "kind": subscription.type,
        "started_at": event.started_at,
        "title": event.title,
        "category_id": event.category_id,
        "category_name": event.category_name,
        "language": event.language,
    }
    try:
        await cluster.command("stream-watcher", "stream_event", args)
    except StreamchatError as exc:
        log.warning("EventSub: %s not recorded (%s); Twitch will retry", subscription.type, exc)
        raise
    return Response(status_code=204)


def _parse_time(value: str) -> datetime | None:
    """Twitch's RFC 3339 timestamps carry nanoseconds; Python takes microseconds."""
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
