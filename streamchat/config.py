"""Settings, read from ``STREAMCHAT_*`` environment variables and CLI flags."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["AuthMode", "Settings", "is_loopback"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/streamchat.db"


class AuthMode(StrEnum):
    #: Anyone may log in by Twitch ID: for development and tests only.
    DEV = "dev"
    #: Log in through Twitch OAuth.
    TWITCH = "twitch"


class Settings(BaseSettings):
    """Every knob of the server; each one is also ``STREAMCHAT_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMCHAT_", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "127.0.0.1"
    """The address to listen on (dev auth refuses anything but loopback by default)."""
    port: int = Field(default=8000, ge=1, le=65535)
    """The port to listen on: HTTP and WebSocket share it."""
    database_url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy URL of the database (SQLite or PostgreSQL)."""
    broker_url: str = "memory://"
    """The broker between processes: ``memory://``, ``redis://``, ``nats://``, ``postgresql://``."""
    broker_namespace: str | None = Field(default=None, max_length=64)
    """Prefixed to every broker channel, so deployments sharing a broker server never hear each
    other; by default made from an id stored in the database."""
    store_url: str | None = None
    """Where chat history lives; defaults to the database."""
    db_statement_timeout: float = Field(default=10.0, gt=0, le=600)
    """No database statement may take longer (seconds), lock waits included."""
    auth_mode: AuthMode = AuthMode.DEV
    """``dev``: log in by Twitch ID; ``twitch``: through Twitch OAuth."""
    allow_dev_auth_remote: bool = False
    """Dev auth lets anyone in by ID, so listening beyond loopback must be asked for."""
    admin_token: str | None = None
    """Bearer token of the admin API (at least 12 characters); unset: the API is disabled."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (``scheme://host[:port]``) trusted for cookie-authenticated writes, besides the
    server's own. Comma-separated in the environment."""
    session_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=60)
    """Seconds a session lasts after login."""
    cookie_secure: bool = False
    """Send the session cookie over HTTPS only (set it behind TLS)."""
    seed_sample_data: bool = True
    """Load the bundled sample streamers when the database has none."""
    log_level: str = "info"
    """critical, error, warning, info or debug."""
    rate_limit: bool = True
    """Twitch-like chat rate limits; ``off`` for benchmarks."""
    max_subscriptions: int = Field(default=50, ge=1)
    """Rooms one WebSocket may be subscribed to at once."""
    presence_announce_limit: int = Field(default=1000, ge=0)
    """Joins and leaves are announced in rooms with at most this many users present."""
    ws_max_queued_bytes: int = Field(default=1 << 20, ge=1 << 12)
    """Bytes queued for a client that is not reading before it is disconnected (4008)."""
    ws_max_message_size: int = Field(default=64 << 10, ge=1 << 10)
    """Largest frame a client may send."""
    ws_ping_interval: float = Field(default=20.0, gt=0)
    """The server pings every interval and drops peers silent for the timeout."""
    ws_ping_timeout: float = Field(default=20.0, gt=0)
    """Seconds a peer may stay silent after a ping before it is dropped."""
    ws_flush_interval: float = Field(default=0.005, ge=0, le=1)
    """Room traffic is written to each connection at most this often (seconds): the larger, the
    fewer socket writes under load, the more latency."""
    session_recheck_seconds: float = Field(default=30.0, gt=0)
    """How often open connections' sessions are checked against the database."""
    ws_compression: bool = False
    """permessage-deflate costs CPU per recipient for little gain on short chat lines."""
    log_format: Literal["text", "json"] = "text"
    """``text`` or ``json`` (one JSON object per line)."""
    metrics_public: bool = True
    """``GET /metrics`` without the admin token; ``false`` puts it behind the token."""

    # -- limits against greedy and hostile clients --
    max_sessions_per_user: int = Field(default=10, ge=1)
    """A user's sessions beyond this many newest are revoked at login."""
    login_attempts_per_ip: int = Field(default=30, ge=1)
    """Login attempts per minute from one address, and for one account."""
    login_attempts_per_account: int = Field(default=10, ge=1)
    """Login attempts per minute for one account."""
    admin_failures_per_ip: int = Field(default=10, ge=1)
    """Wrong or missing admin tokens per minute from one address before it is refused."""
    max_connections_per_ip: int = Field(default=200, ge=1)
    """Open WebSockets from one address, and of one user."""
    max_connections_per_user: int = Field(default=20, ge=1)
    """Open WebSockets of one user."""
    http_request_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a client has to send a whole HTTP request (headers and body), from its first byte or
    from connecting; slower ones are cut off."""
    max_request_body: int = Field(default=64 << 10, ge=1024)
    """The largest HTTP request body, in bytes."""
    ws_max_requests_per_frame: int = Field(default=64, ge=1)
    """Requests in one WebSocket frame; and per second per connection (with a burst of twice as
    many), unless ``rate_limit`` is off."""
    ws_requests_per_second: float = Field(default=20.0, gt=0)
    """Requests other than ``publish`` per second per connection (burst twice as many)."""
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses of reverse proxies whose ``X-Forwarded-For`` names the client (comma-separated IPs
    or CIDRs); empty: the peer's address is the client's."""

    # -- background actors --
    run_singletons: bool = True
    """Run the singleton actors (stream watcher, retention) in this server; ``serve --no-workers``
    leaves them to ``streamchat worker`` processes."""
    watch_source: Literal["sample", "helix"] | None = None
    """Where live stream status comes from: ``sample`` is the bundled, made-up schedule,
    ``helix`` Twitch's API; by default ``helix`` in the ``twitch`` auth mode, else ``sample``."""
    watch_interval: float = Field(default=10.0, gt=0)
    """Seconds between two refreshes of every streamer's live status."""
    watch_speed: float = Field(default=1.0, gt=0, le=1_000_000)
    """How much faster than real time the sample schedule runs (for demos and tests)."""
    watch_seed: int = 0
    """The sample schedule's seed: the same seed, the same streams everywhere."""
    retention_days: float = Field(default=30.0, ge=0)
    """Chat messages older than this many days are pruned (0: kept forever)."""
    retention_max_messages: int = Field(default=100_000, ge=0)
    """Each room keeps at most this many newest messages (0: no limit)."""
    retention_interval: float = Field(default=300.0, gt=0)
    """Seconds between two retention runs."""
    janitor_interval: float = Field(default=30.0, gt=0)
    """Seconds between two sweeps of dead processes' presence rows and expired sessions."""
    actor_lease_seconds: float = Field(default=10.0, ge=1, le=300)
    """A singleton actor's process must renew its lease within this many seconds, or another
    process takes the actor over."""

    # -- Twitch (the ``twitch`` auth mode) --
    twitch_client_id: str | None = None
    """The client id of the Twitch application (dev.twitch.tv/console/apps)."""
    twitch_client_secret: SecretStr | None = None
    """The client secret of the Twitch application."""
    public_url: str | None = None
    """The server's external base URL, e.g. ``https://chat.example.com``; Twitch sends logins
    back to ``{public_url}/auth/twitch/callback``, and EventSub to ``/api/twitch/eventsub``."""
    twitch_id_url: str = "https://id.twitch.tv"
    """Twitch's OAuth server; point it at a local fake for development and tests."""
    twitch_api_url: str = "https://api.twitch.tv"
    """Twitch's Helix API; point it at a local fake for development and tests."""
    twitch_eventsub_secret: SecretStr | None = None
    """The secret (10 to 100 characters) EventSub signs webhooks with; with an https public URL,
    live changes then arrive by EventSub as well as by polling."""
    twitch_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds any one call to Twitch may take."""

    @field_validator("public_url", "twitch_id_url", "twitch_api_url")
    @classmethod
    def _base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        url = (value or "").strip().rstrip("/")
        if not url and info.field_name == "public_url":
            return None  # unset
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return url

    @field_validator("twitch_eventsub_secret")
    @classmethod
    def _eventsub_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        secret = value.get_secret_value()
        if not 10 <= len(secret) <= 100 or not secret.isascii():
            raise ValueError("must be 10 to 100 ASCII characters (Twitch's rule)")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None  # unset: administration is disabled
        if len(value) < 12 or any(ch.isspace() for ch in value):
            raise ValueError("must be at least 12 characters, without spaces")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("must be one of critical, error, warning, info, debug")
        return value.lower()

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for item in value:
                ipaddress.ip_network(str(item), strict=False)  # ValueError names it
        return value

    @property
    def chat_store_url(self) -> str:
        return self.store_url or self.database_url

    @property
    def stream_source(self) -> Literal["sample", "helix"]:
        if self.watch_source is not None:
            return self.watch_source
        return "helix" if self.auth_mode is AuthMode.TWITCH else "sample"

    def twitch_problems(self) -> list[str]:
        """What the ``twitch`` auth mode (or the ``helix`` stream source) lacks; empty when
        nothing does, or when neither is used."""
        if self.auth_mode is not AuthMode.TWITCH and self.stream_source != "helix":
            return []
        needed = {
            "twitch_client_id": self.twitch_client_id,
            "twitch_client_secret": self.twitch_client_secret,
        }
        if self.auth_mode is AuthMode.TWITCH:
            needed["public_url"] = self.public_url
        why = (
            "STREAMCHAT_AUTH_MODE=twitch"
            if self.auth_mode is AuthMode.TWITCH
            else ("STREAMCHAT_WATCH_SOURCE=helix")
        )
        return [
            f"STREAMCHAT_{name.upper()} is required with {why}"
            for name, value in needed.items()
            if not value
        ]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
