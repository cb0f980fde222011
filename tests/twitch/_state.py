"""What the fake Twitch knows: its registered app, users, live streams, authorization
codes, tokens and EventSub subscriptions, each rendered in Twitch's JSON shape."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AuthorizationCode",
    "LiveStream",
    "Subscription",
    "Token",
    "TwitchState",
    "TwitchUser",
    "nano_timestamp",
    "random_token",
    "rfc3339",
]

_ALPHABET = string.ascii_lowercase + string.digits


def random_token(length: int = 30) -> str:
    """Twitch's tokens, codes and client IDs: lower-case letters and digits, 30 long."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def rfc3339(moment: float) -> str:
    """Whole seconds, as Helix writes ``created_at`` and ``started_at``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nano_timestamp(moment: float) -> str:
    """Nanoseconds, as EventSub writes its timestamps (``2023-11-06T18:11:47.492253549Z``)."""
    whole = datetime.fromtimestamp(moment, UTC)
    # A float carries microseconds at best; the last three digits only fill the width.
    nanos = whole.microsecond * 1000 + secrets.randbelow(1000)
    return whole.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass
class TwitchUser:
    id: str
    login: str
    display_name: str
    type: str = ""
    broadcaster_type: str = ""
    description: str = ""
    profile_image_url: str = ""
    offline_image_url: str = ""
    view_count: int = 0
    email: str = ""
    created_at: str = "2016-12-14T20:32:28Z"

    def as_json(self, *, email: str | None) -> dict[str, Any]:
        """Get Users' object; ``email`` is included only when not ``None``."""
        out: dict[str, Any] = {
            "id": self.id,
            "login": self.login,
            "display_name": self.display_name,
            "type": self.type,
            "broadcaster_type": self.broadcaster_type,
            "description": self.description,
            "profile_image_url": self.profile_image_url,
            "offline_image_url": self.offline_image_url,
            "view_count": self.view_count,
        }
        if email is not None:
            out["email"] = email
        out["created_at"] = self.created_at
        return out


@dataclass
class LiveStream:
    id: str
    user: TwitchUser
    title: str = ""
    game_id: str = ""
    game_name: str = ""
    viewer_count: int = 0
    language: str = "en"
    tags: list[str] = field(default_factory=list)
    #: Seconds since the epoch.
    started_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """Get Streams' object."""
        return {
            "id": self.id,
            "user_id": self.user.id,
            "user_login": self.user.login,
            "user_name": self.user.display_name,
            "game_id": self.game_id,
            "game_name": self.game_name,
            "type": "live",
            "title": self.title,
            "tags": list(self.tags),
            "viewer_count": self.viewer_count,
            "started_at": rfc3339(self.started_at),
            "language": self.language,
            "thumbnail_url": (
                "https://static-cdn.jtvnw.net/previews-ttv/"
                f"live_user_{self.user.login}-{{width}}x{{height}}.jpg"
            ),
            "tag_ids": [],
            "is_mature": False,
        }


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    expires_at: float
    used: bool = False


@dataclass
class Token:
    """An access token: a user's (with a refresh token) or the app's (without)."""

    access_token: str
    client_id: str
    scopes: list[str]
    expires_at: float
    user_id: str | None = None
    refresh_token: str | None = None
    #: Revoked by ``/oauth2/revoke``, by a refresh that replaced it, or by the test.
    revoked: bool = False
    #: Whether its refresh token still works: false once the grant is revoked (the user
    #: disconnected the app, or the app revoked the token) or the refresh token was used.
    refreshable: bool = True

    @property
    def is_app_token(self) -> bool:
        return self.user_id is None

    def is_valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class Subscription:
    """An EventSub subscription with the webhook transport."""

    type: str
    version: str
    condition: dict[str, str]
    callback: str
    secret: str
    client_id: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "webhook_callback_verification_pending"
    created_at: str = ""
    cost: int = 1

    def as_json(self) -> dict[str, Any]:
        """The subscription object of Helix responses and of EventSub message bodies (the
        secret is never echoed)."""
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "version": self.version,
            "condition": dict(self.condition),
            "created_at": self.created_at,
            "transport": {"method": "webhook", "callback": self.callback},
            "cost": self.cost,
        }


@dataclass
class TwitchState:
    """Everything the endpoints read and change; the test changes it through
    :class:`tests.twitch.fake.FakeTwitch`."""

    client_id: str
    client_secret: str
    #: The app's registered OAuth redirect URLs; Twitch falls back to the first.
    redirect_uris: list[str]
    clock: Callable[[], float]
    code_ttl: float
    user_token_ttl: float
    app_token_ttl: float
    users: dict[str, TwitchUser] = field(default_factory=dict)
    streams: dict[str, LiveStream] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: Who is signed in to Twitch in the browser that follows ``/oauth2/authorize``.
    signed_in_user_id: str | None = None
    #: Whether that user clicks "Authorize" (else "Cancel").
    grants_consent: bool = True

    def user_by_login(self, login: str) -> TwitchUser | None:
        login = login.lower()
        return next((u for u in self.users.values() if u.login == login), None)

    def token(self, access_token: str) -> Token | None:
        """The token if Twitch would accept it now."""
        token = self.tokens.get(access_token)
        if token is None or not token.is_valid(self.clock()):
            return None
        return token

    def issue_token(self, *, user_id: str | None, scopes: list[str]) -> Token:
        now = self.clock()
        if user_id is None:
            token = Token(random_token(), self.client_id, scopes, now + self.app_token_ttl)
        else:
            token = Token(
                random_token(),
                self.client_id,
                scopes,
                now + self.user_token_ttl,
                user_id=user_id,
                refresh_token=random_token(50),
            )
        self.tokens[token.access_token] = token
        return token
