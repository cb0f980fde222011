"""Twitch's OAuth server and Helix API, through httpx.

Every call goes to ``STREAMCHAT_TWITCH_ID_URL`` or ``STREAMCHAT_TWITCH_API_URL``
(so a local fake can stand in for Twitch) with a timeout. Helix calls carry an
app access token (client credentials), fetched on first use, refreshed before
it expires and after a 401. They honour ``Ratelimit-Remaining`` and
``Ratelimit-Reset``, and retry 429s and server errors with backoff; what still
fails raises :class:`~streamchat.errors.TwitchUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from streamchat.backoff import Backoff
from streamchat.config import Settings
from streamchat.errors import LoginExpired, TwitchRefused, TwitchUnavailable
from streamchat.twitch.helix import HelixStream, HelixUser

__all__ = ["EventSubSubscription", "TokenInfo", "TwitchAPI"]

log = logging.getLogger("streamchat.twitch")

#: Helix takes at most this many ids or logins per request.
BATCH = 100
#: Attempts of one Helix call (the first and its retries).
_ATTEMPTS = 4
_RETRY = Backoff(first=0.25, cap=4.0)
#: An app token is renewed this long before Twitch says it expires (seconds).
_RENEW_BEFORE = 300.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Token(_Model):
    access_token: str
    expires_in: int = 0


class TokenInfo(_Model):
    """``GET /oauth2/validate``: who a user access token belongs to."""

    client_id: str
    user_id: str | None = None
    login: str | None = None
    expires_in: int = 0


class EventSubSubscription(_Model):
    id: str
    status: str
    type: str
    version: str
    condition: dict[str, str]
    transport: dict[str, str]


@dataclass(slots=True)
class _AppToken:
    value: str
    #: monotonic seconds after which it is renewed before use
    renew_at: float


class TwitchAPI:
    """One application's client of Twitch: its user logins and its Helix calls."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        id_url: str = "https://id.twitch.tv",
        api_url: str = "https://api.twitch.tv",
        timeout: float = 10.0,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.id_url = id_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=timeout, headers={"User-Agent": "streamchat"}, follow_redirects=False
        )
        self._token: _AppToken | None = None
        self._token_lock = asyncio.Lock()
        # What Helix last said of our rate-limit bucket: calls left, and when it refills.
        self._remaining: int | None = None
        self._reset_at = 0.0
        self._max_wait = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> TwitchAPI | None:
        """The client of the configured application; ``None`` without its credentials."""
        if not settings.twitch_client_id or settings.twitch_client_secret is None:
            return None
        return cls(
            client_id=settings.twitch_client_id,
            client_secret=settings.twitch_client_secret.get_secret_value(),
            id_url=settings.twitch_id_url,
            api_url=settings.twitch_api_url,
            timeout=settings.twitch_timeout,
        )

    async def close(self) -> None:
        await self._http.aclose()

    # -- OAuth: logging a viewer in ------------------------------------------------------

    def authorize_url(self, *, redirect_uri: str, state: str, scope: str = "") -> str:
        """Where to send the viewer's browser: Twitch's consent page."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "state": state,
            }
        )
        return f"{self.id_url}/oauth2/authorize?{query}"

    async def exchange_code(self, code: str, *, redirect_uri: str) -> str:
        """The user access token for an authorization code (:class:`LoginExpired` when
        Twitch refuses the code: used, expired or made up)."""
        response = await self._grant("authorization_code", code=code, redirect_uri=redirect_uri)
        if response.status_code in (400, 401, 403):
            raise LoginExpired(f"Twitch refused the login code ({_message(response)}); try again")
        return _parse(_Token, _ok(response)).access_token

    async def validate(self, access_token: str) -> TokenInfo:
        """Check a user access token with Twitch: whose it is and for which application."""
        response = await self._call(
            "GET",
            f"{self.id_url}/oauth2/validate",
            headers={"Authorization": f"OAuth {access_token}"},
        )
        if response.status_code == 401:
            raise LoginExpired("Twitch says the login's token is not valid; try again")
        return _parse(TokenInfo, _ok(response))

    async def token_user(self, access_token: str) -> HelixUser:
        """The user a user access token belongs to (``GET /helix/users`` with it)."""
        response = await self._call(
            "GET",
            f"{self.api_url}/helix/users",
            headers={"Authorization": f"Bearer {access_token}", "Client-Id": self.client_id},
        )
        if response.status_code == 401:
            raise LoginExpired("Twitch says the login's token is not valid; try again")
        users = _parse(_Users, _ok(response)).data
        if len(users) != 1:
            raise TwitchUnavailable("Twitch did not say who logged in")
        return users[0]

    async def revoke(self, access_token: str) -> None:
        """Revoke a user access token; failures are only logged (it expires anyway)."""
        try:
            await self._http.post(
                f"{self.id_url}/oauth2/revoke",
                data={"client_id": self.client_id, "token": access_token},
            )
        except httpx.HTTPError as exc:
            log.info("revoking a user token failed (it expires by itself): %s", exc)

    # -- Helix with the app token --------------------------------------------------------

    async def users(
        self, *, ids: Iterable[str] = (), logins: Iterable[str] = ()
    ) -> list[HelixUser]:
        """The users with these ids or logins (unknown ones are left out), 100 per call."""
        keys = [("id", value) for value in dict.fromkeys(ids)]
        keys += [("login", value.lower()) for value in dict.fromkeys(logins)]
        found: list[HelixUser] = []
        for start in range(0, len(keys), BATCH):
            body = await self.helix("GET", "/helix/users", params=keys[start : start + BATCH])
            found.extend(_parse(_Users, body).data)
        return found

    async def streams(self, user_ids: Sequence[str]) -> list[HelixStream]:
        """The live streams of these users, 100 users per call."""
        ids = list(dict.fromkeys(user_ids))
        found: list[HelixStream] = []
        for start in range(0, len(ids), BATCH):
            params: list[tuple[str, str]] = [
                ("user_id", value) for value in ids[start : start + BATCH]
            ]
            params.append(("first", str(BATCH)))
            body = await self.helix("GET", "/helix/streams", params=params)
            found.extend(_parse(_Streams, body).data)
        return found

    async def subscribe_eventsub(
        self, kind: str, version: str, broadcaster_id: str, *, callback: str, secret: str
    ) -> EventSubSubscription | None:
        """Ask Twitch to send ``kind`` events of a broadcaster to ``callback``; ``None``
        when that subscription exists already."""
        try:
            body = await self.helix(
                "POST",
                "/helix/eventsub/subscriptions",
                json={
                    "type": kind,
                    "version": version,
                    "condition": {"broadcaster_user_id": broadcaster_id},
                    "transport": {"method": "webhook", "callback": callback, "secret": secret},
                },
            )
        except TwitchRefused as exc:
            if exc.twitch_status == 409:
                return None
            raise
        return _parse(_Subscriptions, body).data[0]

    async def unsubscribe_eventsub(self, subscription_id: str) -> None:
        await self.helix(
            "DELETE", "/helix/eventsub/subscriptions", params=[("id", subscription_id)]
        )

    async def eventsub_subscriptions(self) -> list[EventSubSubscription]:
        found: list[EventSubSubscription] = []
        after: str | None = None
        while True:
            params = [("after", after)] if after else []
            body = await self.helix("GET", "/helix/eventsub/subscriptions", params=params)
            page = _parse(_Subscriptions, body)
            found.extend(page.data)
            after = (page.pagination or {}).get("cursor")
            if not after or not page.data:
                return found

    async def helix(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        """One Helix call with the app token: retried on 401 (with a new token), 429 (after
        the bucket's reset) and 5xx (with backoff); its decoded JSON, or ``None`` for 204."""
        url = f"{self.api_url}{path}"
        problem = "no answer"
        renewed = False
        for attempt in range(1, _ATTEMPTS + 1):
            last = attempt == _ATTEMPTS
            await self._within_rate_limit()
            token = await self._app_token()
            try:
                response = await self._call(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", "Client-Id": self.client_id},
                )
            except TwitchUnavailable as exc:  # no answer (in time)
                log.warning("Helix %s %s: %s (attempt %d)", method, path, exc, attempt)
                problem = str(exc)
                if not last:
                    await _RETRY.wait(attempt)
                continue
            self._note_rate_limit(response)
            status = response.status_code
            if status == 401:
                # Revoked or expired early: a new app token, once per call.
                problem = "401 with a fresh token"
                if renewed:
                    break
                self._token, renewed = None, True
                continue
            if status == 429:
                problem = "rate limited"
                if not last:
                    await self._wait_for_reset(attempt)
                continue
            if status >= 500:
                problem = f"server error {status}"
                if not last:
                    await _RETRY.wait(attempt)
                continue
            if status >= 400:
                raise TwitchRefused(status, _message(response))
            return None if status == 204 or not response.content else response.json()
        raise TwitchUnavailable(f"Twitch's API is unavailable ({problem}); try again later")

    # -- plumbing ------------------------------------------------------------------------

    async def _app_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < token.renew_at:
            return token.value
        async with self._token_lock:
            token = self._token
            if token is not None and time.monotonic() < token.renew_at:
                return token.value
            response = await self._grant("client_credentials")
            if response.status_code in (400, 401, 403):
                # A wrong client id or secret: the operator's to fix, loudly.
                log.error("Twitch refused the app's credentials: %s", _message(response))
                raise TwitchUnavailable("Twitch refused this server's application credentials")
            fresh = _parse(_Token, _ok(response))
            lifetime = max(0.0, fresh.expires_in - _RENEW_BEFORE) if fresh.expires_in else 3600.0
            self._token = _AppToken(fresh.access_token, time.monotonic() + lifetime)
            return fresh.access_token

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("Ratelimit-Remaining")
        reset = response.headers.get("Ratelimit-Reset")
        try:
            self._remaining = int(remaining) if remaining is not None else None
            if reset is not None:
                self._reset_at = float(reset)
        except ValueError:
            self._remaining = None

    async def _within_rate_limit(self) -> None:
        """With the bucket empty, wait for its reset (if soon enough) rather than earn a 429."""
        if self._remaining is None or self._remaining > 0:
            return
        wait = self._reset_at - time.time()
        if wait > self._max_wait:
            raise TwitchUnavailable(f"Twitch's rate limit resets in {wait:.0f} s; try again later")
        if wait > 0:
            await asyncio.sleep(wait)
        self._remaining = None

    async def _wait_for_reset(self, attempt: int) -> None:
        wait = self._reset_at - time.time()
        if wait > self._max_wait:
            raise TwitchUnavailable(f"Twitch's rate limit resets in {wait:.0f} s; try again later")
        await asyncio.sleep(max(wait, _RETRY.delay(attempt)))
        self._remaining = None

    async def _grant(self, grant_type: str, **fields: str) -> httpx.Response:
        """``POST /oauth2/token`` with the application's credentials."""
        data = {"client_id": self.client_id, "client_secret": self._secret, **fields}
        return await self._call(
            "POST", f"{self.id_url}/oauth2/token", data={**data, "grant_type": grant_type}
        )

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TwitchUnavailable("Twitch did not answer in time; try again later") from exc
        except httpx.HTTPError as exc:
            raise TwitchUnavailable(f"Twitch cannot be reached ({exc}); try again later") from exc


class _Users(_Model):
    data: list[HelixUser]


class _Streams(_Model):
    data: list[HelixStream]
    pagination: dict[str, str] | None = None


class _Subscriptions(_Model):
    data: list[EventSubSubscription]
    pagination: dict[str, str] | None = None


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 500 or response.status_code == 429:
        raise TwitchUnavailable(f"Twitch answered {response.status_code}; try again later")
    if response.status_code >= 400:
        raise TwitchRefused(response.status_code, _message(response))
    try:
        return response.json()
    except ValueError as exc:
        raise TwitchUnavailable("Twitch answered with something other than JSON") from exc


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise TwitchUnavailable(f"Twitch's answer had an unexpected shape: {exc}") from exc


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or str(response.status_code)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body)[:200]
