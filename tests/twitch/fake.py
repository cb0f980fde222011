"""A fake Twitch for tests: a real HTTP server on ``127.0.0.1`` that answers as
``id.twitch.tv`` and ``api.twitch.tv`` do, and sends EventSub webhooks as Twitch does.

Twitch's servers are the one thing a test cannot run, so this stands in for them, shaped
after Twitch's documentation and the Twitch CLI's ``mock-api`` (field names, status codes,
error bodies, headers). Both hosts are served from one port (their paths do not collide);
give the server ``fake.id_url`` as ``TWITCH_ID_URL`` and ``fake.api_url`` as
``TWITCH_API_URL``. Tests change what Twitch knows, and break it, through this object's
methods, never through HTTP::

    async with fake_twitch_server(redirect_uris=[callback]) as fake:
        streamer = fake.add_user("pixelpaladin")
        fake.log_in_as(streamer.id)
        fake.set_live(streamer.id, title="Any% glitchless", viewer_count=120)
        fake.inject("/helix/streams", Fault.error(503), times=2)
        ...
        assert fake.requests_to("/helix/streams")[-1].headers["Client-Id"] == fake.client_id

id.twitch.tv
    ``GET /oauth2/authorize`` (authorization-code flow): the browser is redirected back
    with ``code``, ``scope`` and ``state``; with ``error=access_denied`` after
    :meth:`FakeTwitch.deny_consent`; to the app's first registered URL with
    ``error=redirect_mismatch`` when ``redirect_uri`` is not registered; a 200 login page
    when nobody is signed in (:meth:`FakeTwitch.log_in_as`).
    ``POST /oauth2/token``: ``authorization_code`` (codes are single-use and expire after
    ``code_ttl``), ``client_credentials`` (no refresh token) and ``refresh_token`` (a new
    access and refresh token; the old ones stop working).
    ``GET /oauth2/validate`` (``Authorization: OAuth <token>``) and ``POST /oauth2/revoke``.
api.twitch.tv/helix
    Every call needs ``Authorization: Bearer <token>`` and the matching ``Client-Id``, and
    spends a point of a rate-limit bucket (one per app for app tokens, one per app and user
    for user tokens; 800 a minute unless configured); every authenticated answer carries
    ``Ratelimit-Limit``, ``Ratelimit-Remaining`` and ``Ratelimit-Reset``.
    ``GET /users`` (``id``/``login``, at most 100 together; none: the token's user),
    ``GET /streams`` (``user_id``, ``user_login``, ``game_id``, ``language``, ``first``,
    ``after``, ``before``; live streams only, most viewers first),
    ``POST``, ``GET`` and ``DELETE /eventsub/subscriptions`` (webhook transport;
    ``stream.online`` v1, ``stream.offline`` v1, ``channel.update`` v2; app token only).
EventSub
    :meth:`FakeTwitch.verify_callback`, :meth:`~FakeTwitch.notify`,
    :meth:`~FakeTwitch.notify_all` and :meth:`~FakeTwitch.revoke_subscription` sign and
    POST ``webhook_callback_verification``, ``notification`` and ``revocation`` messages
    with Twitch's headers; options forge the signature, age the timestamp, set the retry
    count or the message id, and :meth:`~FakeTwitch.replay` resends a delivery byte for
    byte.
Faults (:meth:`FakeTwitch.inject`)
    the next N requests to a path get a 5xx (:meth:`Fault.error`), a 429 with a chosen
    ``Ratelimit-Reset`` (:meth:`Fault.rate_limited`), an answer held back for a while
    (:meth:`Fault.slow`), or the connection closed before any byte (:meth:`Fault.hang_up`).
    Every request is recorded (:attr:`FakeTwitch.requests`).

Where it differs from Twitch, on purpose:

- Twitch sends the verification challenge on its own after a subscription is created;
  here the test sends it with :meth:`FakeTwitch.verify_callback`, and only enabled
  subscriptions receive :meth:`FakeTwitch.notify_all`.
- Webhooks go to ``webhook_origin`` (the server under test, over plain HTTP) with the
  path of the registered ``https://`` callback, or to an explicit ``to=`` URL.
- A rate-limit bucket refills all at once at ``Ratelimit-Reset``; Twitch's refills
  gradually. 401 answers, injected faults and id.twitch.tv carry no ``Ratelimit-*``.
- Only the webhook transport and the three subscription types above; no implicit,
  device-code or OIDC flows; scopes are not checked against Twitch's list and Helix
  endpoints do not require any.
- Assumed, for want of a source (status codes and body shapes are Twitch's, the
  wording may not be): the messages for an unknown or missing ``client_id``
  (``invalid client``, ``missing client id``), an unknown ``grant_type`` or
  ``response_type``, ``/oauth2/validate`` without a token, Get Users' 400s, the
  ``first``/``type``/cursor checks of Get Streams, Helix's 429, and the EventSub 400,
  401, 404 and 409 messages (taken from the reference's descriptions of the codes).
  Also assumed: a refresh rotates the refresh token (Twitch says it *may*), revoking an
  access token ends its refresh token, an expired token gets ``Invalid OAuth token``,
  logins match case-insensitively, and an app token validates with ``"scopes": []``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.twitch import _helix, _oauth
from tests.twitch._eventsub import (
    NOTIFICATION,
    REVOCATION,
    VERIFICATION,
    Delivery,
    message_body,
    signature,
    signed_headers,
)
from tests.twitch._http import HttpServer, Request, Response, json_response
from tests.twitch._ratelimit import RateLimiter
from tests.twitch._state import (
    AuthorizationCode,
    LiveStream,
    Subscription,
    Token,
    TwitchState,
    TwitchUser,
    nano_timestamp,
    random_token,
)

__all__ = [
    "Delivery",
    "FakeTwitch",
    "Fault",
    "LiveStream",
    "Request",
    "Subscription",
    "Token",
    "TwitchUser",
    "fake_twitch_server",
    "signature",
]

#: Registered when the test names none: where a local server would take the user back.
DEFAULT_REDIRECT_URI = "http://localhost:8000/auth/twitch/callback"


@dataclass(frozen=True)
class Fault:
    """What an injected fault does to a request."""

    kind: Literal["error", "rate_limited", "slow", "hang_up"]
    status: int = 0
    seconds: float = 0.0

    @classmethod
    def error(cls, status: int = 500) -> Fault:
        """Answer ``status`` (500, 502, 503 ...) with Twitch's error body."""
        return cls("error", status=status)

    @classmethod
    def rate_limited(cls, reset_in: float) -> Fault:
        """Answer 429 with ``Ratelimit-Remaining: 0`` and a reset ``reset_in`` seconds on."""
        return cls("rate_limited", status=429, seconds=reset_in)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Hold the request ``seconds`` before answering it as usual."""
        return cls("slow", seconds=seconds)

    @classmethod
    def hang_up(cls) -> Fault:
        """Close the connection without a byte of answer."""
        return cls("hang_up")


@dataclass
class _Injected:
    path: str
    method: str | None
    fault: Fault
    remaining: int


_HelixEndpoint = Callable[[TwitchState, Token, Request], Response]
_HELIX: dict[tuple[str, str], _HelixEndpoint] = {
    ("GET", "/helix/users"): _helix.get_users,
    ("GET", "/helix/streams"): _helix.get_streams,
    ("POST", "/helix/eventsub/subscriptions"): _helix.create_subscription,
    ("GET", "/helix/eventsub/subscriptions"): _helix.list_subscriptions,
    ("DELETE", "/helix/eventsub/subscriptions"): _helix.delete_subscription,
}
_ID: dict[tuple[str, str], Callable[[TwitchState, Request], Response]] = {
    ("GET", "/oauth2/authorize"): _oauth.authorize,
    ("POST", "/oauth2/token"): _oauth.token,
    ("GET", "/oauth2/validate"): _oauth.validate,
    ("POST", "/oauth2/revoke"): _oauth.revoke,
}


class FakeTwitch:
    """Twitch's identity service, Helix and EventSub, for one test."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
        code_ttl: float = 600.0,
        user_token_ttl: float = 14400.0,
        app_token_ttl: float = 5_000_000.0,
        rate_limit: int = 800,
        rate_window: float = 60.0,
        webhook_origin: str | None = None,
        webhook_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        uris = list(redirect_uris)
        if not uris:
            raise ValueError("An app registers at least one OAuth redirect URL.")
        self._state = TwitchState(
            client_id=client_id or random_token(),
            client_secret=client_secret or random_token(),
            redirect_uris=uris,
            clock=clock,
            code_ttl=code_ttl,
            user_token_ttl=user_token_ttl,
            app_token_ttl=app_token_ttl,
        )
        self._clock = clock
        self._limiter = RateLimiter(rate_limit, rate_window, clock)
        self._faults: list[_Injected] = []
        self._ids = itertools.count(1)
        self._server = HttpServer(self._handle, clock)
        self._webhooks: httpx.AsyncClient | None = None
        self._webhook_timeout = webhook_timeout
        #: Where webhooks are delivered: ``scheme://host:port`` that replaces the
        #: registered callback's, keeping its path.
        self.webhook_origin = webhook_origin
        #: Every request either host received, in order, faulted ones included.
        self.requests: list[Request] = []

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self._server.start()

    async def close(self) -> None:
        await self._server.close()
        if self._webhooks is not None:
            await self._webhooks.aclose()
            self._webhooks = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        if not self._server.port:
            raise RuntimeError("The fake Twitch is not running. Need to call start() first.")
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def id_url(self) -> str:
        """Stands for ``https://id.twitch.tv``."""
        return self.url

    @property
    def api_url(self) -> str:
        """Stands for ``https://api.twitch.tv``."""
        return self.url

    # -- the registered app ----------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._state.client_id

    @property
    def client_secret(self) -> str:
        return self._state.client_secret

    @property
    def redirect_uri(self) -> str:
        """The app's first registered OAuth redirect URL."""
        return self._state.redirect_uris[0]

    # -- users, streams and the browser's session ------------------------------------

    @property
    def users(self) -> Mapping[str, TwitchUser]:
        return self._state.users

    def add_user(
        self,
        login: str,
        *,
        user_id: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        **fields: Any,
    ) -> TwitchUser:
        """A Twitch account; ``fields`` are any other of :class:`TwitchUser`'s."""
        if user_id is None:
            user_id = self._fresh_id(self._state.users)
        if user_id in self._state.users:
            raise ValueError(f"User {user_id} already exists.")
        user = TwitchUser(
            id=user_id,
            login=login.lower(),
            display_name=display_name or login,
            email=email or f"{login.lower()}@example.com",
            **fields,
        )
        self._state.users[user.id] = user
        return user

    def set_live(
        self,
        user_id: str,
        *,
        title: str | None = None,
        game_id: str | None = None,
        game_name: str | None = None,
        viewer_count: int | None = None,
        language: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> LiveStream:
        """Start ``user_id``'s stream, or change the one that is live (it keeps its id
        and start time)."""
        user = self._user(user_id)
        stream = self._state.streams.get(user_id)
        if stream is None:
            stream = LiveStream(
                id=str(40_000_000_000 + next(self._ids)),
                user=user,
                started_at=float(int(self._clock())),
            )
            self._state.streams[user_id] = stream
        changes: dict[str, Any] = {
            "title": title,
            "game_id": game_id,
            "game_name": game_name,
            "viewer_count": viewer_count,
            "language": language,
            "tags": None if tags is None else list(tags),
        }
        for name, value in changes.items():
            if value is not None:
                setattr(stream, name, value)
        return stream

    def set_offline(self, user_id: str) -> None:
        self._user(user_id)
        self._state.streams.pop(user_id, None)

    def log_in_as(self, user_id: str | None) -> None:
        """Who is signed in to Twitch when the browser reaches ``/oauth2/authorize``;
        ``None``: nobody, Twitch shows its login page."""
        if user_id is not None:
            self._user(user_id)
        self._state.signed_in_user_id = user_id

    def deny_consent(self) -> None:
        """The user clicks "Cancel" on the consent page from now on."""
        self._state.grants_consent = False

    def grant_consent(self) -> None:
        """The user clicks "Authorize" (the default)."""
        self._state.grants_consent = True

    def _fresh_id(self, taken: Mapping[str, object]) -> str:
        while (candidate := str(100_000_000 + next(self._ids) * 7919)) in taken:
            pass
        return candidate

    def _user(self, user_id: str) -> TwitchUser:
        try:
            return self._state.users[user_id]
        except KeyError:
            raise KeyError(f"No user {user_id}; add_user() it first.") from None

    # -- codes and tokens ------------------------------------------------------------

    @property
    def codes(self) -> list[AuthorizationCode]:
        """Authorization codes issued, oldest first."""
        return list(self._state.codes.values())

    @property
    def tokens(self) -> list[Token]:
        """Access tokens issued, oldest first, dead ones included."""
        return list(self._state.tokens.values())

    def expire_code(self, code: str | None = None) -> None:
        """``code`` (every code when ``None``) is too old to exchange."""
        for issued in self._state.codes.values():
            if code is None or issued.code == code:
                issued.expires_at = self._clock()

    def expire_token(self, token: str | None = None) -> None:
        """``token`` (every token when ``None``) has expired: Helix answers 401, and a
        user token's refresh token still works."""
        for issued in self._select(token):
            issued.expires_at = self._clock()

    def revoke_token(self, token: str | None = None) -> None:
        """``token`` (every token when ``None``) is revoked, as when the user disconnects
        the app: Helix answers 401, and its refresh token no longer works."""
        for issued in self._select(token):
            issued.revoked, issued.refreshable = True, False

    def issue_app_token(self) -> Token:
        """An app access token, as ``client_credentials`` would grant."""
        return self._state.issue_token(user_id=None, scopes=[])

    def issue_user_token(self, user_id: str, scopes: Iterable[str] = ()) -> Token:
        """A user access token, as the authorization-code flow would grant."""
        self._user(user_id)
        return self._state.issue_token(user_id=user_id, scopes=list(scopes))

    def _select(self, token: str | None) -> list[Token]:
        if token is None:
            return list(self._state.tokens.values())
        if token not in self._state.tokens:
            raise KeyError(f"No token {token!r} was issued.")
        return [self._state.tokens[token]]

    # -- rate limit, faults and recorded requests ------------------------------------

    def set_rate_limit(self, points: int, window: float = 60.0) -> None:
        """Helix buckets of ``points`` that refill every ``window`` seconds; every
        bucket starts full."""
        self._limiter.configure(points, window)

    def inject(self, path: str, fault: Fault, *, times: int = 1, method: str | None = None) -> None:
        """The next ``times`` requests to ``path`` (of ``method``, or any) meet
        ``fault``; faults on one path apply in the order they were injected."""
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Injected(path, method and method.upper(), fault, times))

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests_to(self, path: str, method: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def _take_fault(self, request: Request) -> Fault | None:
        for injected in self._faults:
            if injected.path == request.path and injected.method in (None, request.method):
                injected.remaining -= 1
                if injected.remaining == 0:
                    self._faults.remove(injected)
                return injected.fault
        return None

    # -- serving ---------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response | None:
        self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None:
            if fault.kind == "hang_up":
                return None
            if fault.kind == "slow":
                await asyncio.sleep(fault.seconds)
            else:
                return self._fault_response(request, fault)
        key = (request.method, request.path)
        if key in _ID:
            return _ID[key](self._state, request)
        if key in _HELIX:
            return self._helix(_HELIX[key], request)
        if request.path.startswith("/helix/"):
            return _helix.error(404)
        return json_response(404, {"status": 404, "message": "Not Found"})

    def _helix(self, endpoint: _HelixEndpoint, request: Request) -> Response:
        token = _helix.authenticate(self._state, request)
        if isinstance(token, Response):
            return token
        allowed, bucket = self._limiter.take((token.client_id, token.user_id))
        headers = bucket.headers(self._clock())
        if not allowed:
            return _helix.error(429, "Too Many Requests", headers)
        response = endpoint(self._state, token, request)
        response.headers.update(headers)
        return response

    def _fault_response(self, request: Request, fault: Fault) -> Response:
        if fault.kind == "rate_limited":
            headers = {
                "Ratelimit-Limit": str(self._limiter.limit),
                "Ratelimit-Remaining": "0",
                "Ratelimit-Reset": str(math.ceil(self._clock() + fault.seconds)),
            }
            return _helix.error(429, "Too Many Requests", headers)
        if request.path.startswith("/oauth2/"):
            return json_response(fault.status, {"status": fault.status, "message": ""})
        return _helix.error(fault.status)

    # -- EventSub --------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[Subscription]:
        """EventSub subscriptions, oldest first."""
        return list(self._state.subscriptions.values())

    def stream_online_event(self, user_id: str) -> dict[str, Any]:
        """``stream.online``'s event for ``user_id``'s live stream (:meth:`set_live`)."""
        user = self._user(user_id)
        stream = self._state.streams.get(user_id)
        if stream is None:
            raise RuntimeError(f"User {user_id} is not live; set_live() them first.")
        started = nano_timestamp(stream.started_at)
        return {
            "id": stream.id,
            "broadcaster_user_id": user.id,
            "broadcaster_user_login": user.login,
            "broadcaster_user_name": user.display_name,
            "type": "live",
            # Milliseconds, as in Twitch's example ("2020-10-11T10:11:12.123Z").
            "started_at": started[:23] + "Z",
        }

    def stream_offline_event(self, user_id: str) -> dict[str, Any]:
        user = self._user(user_id)
        return {
            "broadcaster_user_id": user.id,
            "broadcaster_user_login": user.login,
            "broadcaster_user_name": user.display_name,
        }

    def channel_update_event(
        self,
        user_id: str,
        *,
        title: str,
        language: str = "en",
        category_id: str = "",
        category_name: str = "",
        content_classification_labels: Iterable[str] = (),
    ) -> dict[str, Any]:
        """``channel.update`` version 2's event."""
        user = self._user(user_id)
        return {
            "broadcaster_user_id": user.id,
            "broadcaster_user_login": user.login,
            "broadcaster_user_name": user.display_name,
            "title": title,
            "language": language,
            "category_id": category_id,
            "category_name": category_name,
            "content_classification_labels": list(content_classification_labels),
        }

    async def verify_callback(self, subscription: Subscription | str, **options: Any) -> Delivery:
        """Send the ``webhook_callback_verification`` challenge. As on Twitch, the
        subscription is enabled when the callback answers 2xx with exactly the challenge
        as its body, and fails verification otherwise."""
        found = self._subscription(subscription)
        challenge = str(uuid.uuid4())
        delivery = await self.send_webhook(found, VERIFICATION, challenge=challenge, **options)
        ok = delivery.response.is_success and delivery.response.text == challenge
        found.status = "enabled" if ok else "webhook_callback_verification_failed"
        return delivery

    async def notify(
        self, subscription: Subscription | str, event: Mapping[str, Any], **options: Any
    ) -> Delivery:
        """Send one ``notification`` with ``event`` for ``subscription``."""
        return await self.send_webhook(
            self._subscription(subscription), NOTIFICATION, event=event, **options
        )

    async def notify_all(self, subscription_type: str, event: Mapping[str, Any]) -> list[Delivery]:
        """Send ``event`` to every enabled subscription of ``subscription_type`` for the
        event's broadcaster, as Twitch does when it happens."""
        broadcaster = event.get("broadcaster_user_id")
        return [
            await self.send_webhook(s, NOTIFICATION, event=event)
            for s in self.subscriptions
            if s.type == subscription_type
            and s.status == "enabled"
            and s.condition.get("broadcaster_user_id") == broadcaster
        ]

    async def revoke_subscription(
        self,
        subscription: Subscription | str,
        status: str = "authorization_revoked",
        **options: Any,
    ) -> Delivery:
        """Twitch revokes the subscription (``authorization_revoked``, ``user_removed``,
        ``notification_failures_exceeded``, ``version_removed``) and says so."""
        found = self._subscription(subscription)
        found.status = status
        return await self.send_webhook(found, REVOCATION, **options)

    async def send_webhook(
        self,
        subscription: Subscription,
        message_type: str,
        *,
        event: Mapping[str, Any] | None = None,
        challenge: str | None = None,
        to: str | None = None,
        signing_secret: str | None = None,
        message_id: str | None = None,
        age: float = 0.0,
        retry: int = 0,
    ) -> Delivery:
        """POST one EventSub message as Twitch does.

        ``to``: the URL (default: the subscription's callback at :attr:`webhook_origin`);
        ``signing_secret``: sign with this instead of the subscription's secret (a
        forgery); ``message_id``: reuse an id (a duplicate); ``age``: seconds to date the
        timestamp back (``age=660`` is 11 minutes stale); ``retry``: the retry count.
        """
        body = message_body(message_type, subscription, event=event, challenge=challenge)
        headers = signed_headers(
            message_type,
            subscription,
            body,
            timestamp=nano_timestamp(self._clock() - age),
            secret=signing_secret if signing_secret is not None else subscription.secret,
            message_id=message_id,
            retry=retry,
        )
        return await self._post(to or self._route(subscription.callback), headers, body)

    async def replay(self, delivery: Delivery) -> Delivery:
        """Send ``delivery``'s request again, byte for byte (a replayed message)."""
        return await self._post(delivery.url, delivery.headers, delivery.body)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> Delivery:
        if not self._server.port:
            raise RuntimeError("The fake Twitch is not running. Need to call start() first.")
        if self._webhooks is None:
            # Made on first use: most tests send no webhook, and a client costs a TLS
            # context. Twitch does not follow redirects.
            self._webhooks = httpx.AsyncClient(
                timeout=self._webhook_timeout, follow_redirects=False
            )
        response = await self._webhooks.post(url, content=body, headers=headers)
        return Delivery(url, headers, body, response)

    def _route(self, callback: str) -> str:
        if self.webhook_origin is None:
            raise RuntimeError(
                "Where should the webhook go? Set webhook_origin to the server under test "
                "(e.g. 'http://127.0.0.1:8000'), or pass to=."
            )
        origin, target = urlsplit(self.webhook_origin), urlsplit(callback)
        return urlunsplit((origin.scheme, origin.netloc, target.path, target.query, ""))

    def _subscription(self, subscription: Subscription | str) -> Subscription:
        if isinstance(subscription, Subscription):
            return subscription
        try:
            return self._state.subscriptions[subscription]
        except KeyError:
            raise KeyError(f"No subscription {subscription}.") from None


@asynccontextmanager
async def fake_twitch_server(**options: Any) -> AsyncIterator[FakeTwitch]:
    """A running :class:`FakeTwitch` (``options`` are its constructor's), stopped after."""
    async with FakeTwitch(**options) as fake:
        yield fake
