"""Attempt limits per client address and per account: logins and admin tokens.

Counted in this process's memory, per minute. Behind several server
processes each counts its own share, which still bounds a brute force.
"""

from __future__ import annotations

from fastapi import Request

from streamchat.config import Settings
from streamchat.errors import TooManyAttempts
from streamchat.rooms.ratelimit import RateLimiter

__all__ = ["Throttles", "client_address"]

_WINDOW = 60.0


def client_address(request: Request) -> str:
    """The client's address: the peer's, or (from trusted proxies only) uvicorn's
    reading of ``X-Forwarded-For``."""
    return request.client.host if request.client else "unknown"


class Throttles:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._login_ip = RateLimiter(window=_WINDOW)
        self._login_account = RateLimiter(window=_WINDOW)
        self._admin_failures = RateLimiter(window=_WINDOW)

    def login(self, address: str, account: str) -> None:
        """Count a login attempt; TooManyAttempts beyond the limits."""
        settings = self._settings
        for limiter, key, limit, what in (
            (self._login_ip, address, settings.login_attempts_per_ip, "from this address"),
            (self._login_account, account, settings.login_attempts_per_account, "for this account"),
        ):
            retry_after = limiter.hit(key, limit)
            if retry_after is not None:
                raise _too_many(f"too many login attempts {what}", retry_after)

    def login_from(self, address: str) -> None:
        """Count a login attempt whose account is not known yet (Twitch's callback)."""
        retry_after = self._login_ip.hit(address, self._settings.login_attempts_per_ip)
        if retry_after is not None:
            raise _too_many("too many login attempts from this address", retry_after)

    def check_admin(self, address: str) -> None:
        """TooManyAttempts while ``address`` has used up its admin-token failures."""
        retry_after = self._admin_failures.peek(address, self._settings.admin_failures_per_ip)
        if retry_after is not None:
            raise _too_many("too many wrong admin tokens from this address", retry_after)

    def admin_failed(self, address: str) -> None:
        self._admin_failures.hit(address, self._settings.admin_failures_per_ip)


def _too_many(message: str, retry_after: float) -> TooManyAttempts:
    return TooManyAttempts(
        f"{message}; retry in {retry_after:.0f} s", details={"retry_after": round(retry_after, 3)}
    )
