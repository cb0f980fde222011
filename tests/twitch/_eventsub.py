"""EventSub webhook messages as Twitch sends them: the JSON bodies, the headers and the
HMAC-SHA256 signature over ``message id + timestamp + raw body``."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tests.twitch._state import Subscription

__all__ = [
    "NOTIFICATION",
    "REVOCATION",
    "VERIFICATION",
    "Delivery",
    "message_body",
    "signature",
    "signed_headers",
]

NOTIFICATION = "notification"
VERIFICATION = "webhook_callback_verification"
REVOCATION = "revocation"


def signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """The ``Twitch-Eventsub-Message-Signature`` header's value."""
    message = message_id.encode() + timestamp.encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def message_body(
    message_type: str,
    subscription: Subscription,
    *,
    event: Mapping[str, Any] | None = None,
    challenge: str | None = None,
) -> bytes:
    """The raw JSON body, exactly the bytes that are signed and sent."""
    payload: dict[str, Any]
    if message_type == VERIFICATION:
        payload = {"challenge": challenge, "subscription": subscription.as_json()}
    elif message_type == NOTIFICATION:
        payload = {"subscription": subscription.as_json(), "event": dict(event or {})}
    elif message_type == REVOCATION:
        payload = {"subscription": subscription.as_json()}
    else:
        raise ValueError(f"Unknown EventSub message type {message_type!r}")
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(
    message_type: str,
    subscription: Subscription,
    body: bytes,
    *,
    timestamp: str,
    secret: str,
    message_id: str | None = None,
    retry: int = 0,
) -> dict[str, str]:
    message_id = message_id or str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "Twitch-Eventsub-Message-Id": message_id,
        "Twitch-Eventsub-Message-Retry": str(retry),
        "Twitch-Eventsub-Message-Type": message_type,
        "Twitch-Eventsub-Message-Signature": signature(secret, message_id, timestamp, body),
        "Twitch-Eventsub-Message-Timestamp": timestamp,
        "Twitch-Eventsub-Subscription-Type": subscription.type,
        "Twitch-Eventsub-Subscription-Version": subscription.version,
    }


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the fake sent it, and what the callback answered."""

    url: str
    headers: dict[str, str]
    body: bytes
    response: httpx.Response

    @property
    def message_id(self) -> str:
        return self.headers["Twitch-Eventsub-Message-Id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)
