"""The fake's ``api.twitch.tv/helix``: authentication, Get Users, Get Streams and the
EventSub subscription endpoints.

Error bodies are ``{"error": <reason phrase>, "status": ..., "message": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from tests.twitch._http import Request, Response, json_response
from tests.twitch._state import Subscription, Token, TwitchState, nano_timestamp

__all__ = [
    "MAX_TOTAL_COST",
    "SUBSCRIPTION_TYPES",
    "authenticate",
    "create_subscription",
    "delete_subscription",
    "error",
    "get_streams",
    "get_users",
    "list_subscriptions",
]

#: What the fake can subscribe to: type -> version.
SUBSCRIPTION_TYPES = {"stream.online": "1", "stream.offline": "1", "channel.update": "2"}
MAX_TOTAL_COST = 10000
_MAX_IDS = 100


def error(status: int, message: str = "", headers: dict[str, str] | None = None) -> Response:
    body = {"error": HTTPStatus(status).phrase, "status": status, "message": message}
    return json_response(status, body, headers)


def _malformed(parameter: str, requirement: str) -> Response:
    return error(400, f'The parameter "{parameter}" was malformed: the value must be {requirement}')


def authenticate(state: TwitchState, request: Request) -> Token | Response:
    """The token a Helix request carries, or Twitch's 401."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return error(401, "OAuth token is missing")
    client_id = request.headers.get("client-id")
    if not client_id:
        return error(401, "Client ID is missing")
    scheme, _, credentials = authorization.partition(" ")
    token = state.token(credentials.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return error(401, "Invalid OAuth token")
    if token.client_id != client_id:
        return error(401, "Client ID and OAuth token do not match")
    return token


def get_users(state: TwitchState, token: Token, request: Request) -> Response:
    ids = request.query.get("id", [])
    logins = request.query.get("login", [])
    if len(ids) + len(logins) > _MAX_IDS:
        return error(
            400,
            "The request exceeded the maximum allowed number of id and/or login query parameters.",
        )
    if any(not value for value in ids + logins):
        return error(400, "Invalid login names, emails or IDs in request")
    if not ids and not logins:
        if token.user_id is None:
            return error(
                400,
                "The id or login query parameter is required unless the request uses a "
                "user access token.",
            )
        ids = [token.user_id]
    found = [state.users[i] for i in ids if i in state.users]
    found += [u for login in logins if (u := state.user_by_login(login)) is not None]
    with_email = "user:read:email" in token.scopes
    data, seen = [], set()
    for user in found:
        if user.id in seen:
            continue
        seen.add(user.id)
        email = (user.email if user.id == token.user_id else "") if with_email else None
        data.append(user.as_json(email=email))
    return json_response(200, {"data": data})


def _encode_cursor(start: int, end: int) -> str:
    raw = json.dumps({"s": start, "e": end}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        page = json.loads(raw)
        return int(page["s"]), int(page["e"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def get_streams(state: TwitchState, token: Token, request: Request) -> Response:
    del token  # an app or a user token, either will do
    filters: dict[str, list[str]] = {}
    for name in ("user_id", "user_login", "game_id", "language"):
        values = request.query.get(name, [])
        if len(values) > _MAX_IDS:
            return _malformed(name, "less than or equal to 100")
        filters[name] = values
    if request.param("type") not in (None, "all", "live"):
        return error(400, "The value in the type query parameter is not valid.")
    first_raw = request.param("first") or "20"
    try:
        first = int(first_raw)
    except ValueError:
        return _malformed("first", "an integer")
    if first > _MAX_IDS:
        return _malformed("first", "less than or equal to 100")
    if first < 1:
        return _malformed("first", "greater than or equal to 1")

    streams = sorted(state.streams.values(), key=lambda s: (-s.viewer_count, s.started_at))
    if filters["user_id"] or filters["user_login"]:
        logins = {login.lower() for login in filters["user_login"]}
        streams = [s for s in streams if s.user.id in filters["user_id"] or s.user.login in logins]
    if filters["game_id"]:
        streams = [s for s in streams if s.game_id in filters["game_id"]]
    if filters["language"]:
        streams = [s for s in streams if s.language in filters["language"]]

    start, end = 0, min(first, len(streams))
    after, before = request.param("after"), request.param("before")
    if after or before:
        page = _decode_cursor(after or before or "")
        if page is None:
            return error(
                400, "The cursor specified in the after or before query parameter is not valid."
            )
        # A cursor marks the page it came with: after it is the next page, before it the
        # previous one.
        if after:
            start, end = page[1], min(page[1] + first, len(streams))
        else:
            end = min(page[0], len(streams))
            start = max(0, end - first)
    data = [s.as_json() for s in streams[start:end]]
    pagination = {"cursor": _encode_cursor(start, end)} if end < len(streams) else {}
    return json_response(200, {"data": data, "pagination": pagination})


def _app_token_required(token: Token) -> Response | None:
    if token.is_app_token:
        return None
    return error(401, "The Authorization header is required and must specify an app access token.")


def _client_subscriptions(state: TwitchState, token: Token) -> list[Subscription]:
    return [s for s in state.subscriptions.values() if s.client_id == token.client_id]


def _totals(subscriptions: list[Subscription]) -> dict[str, int]:
    return {
        "total": len(subscriptions),
        "total_cost": sum(s.cost for s in subscriptions),
        "max_total_cost": MAX_TOTAL_COST,
    }


def _callback_error(callback: Any) -> str | None:
    if not isinstance(callback, str) or not callback:
        return "The callback field is required if you specify the webhook transport method."
    try:
        parts = urlsplit(callback)
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not parts.hostname or port not in (None, 443):
        return (
            "The URL in the transport's callback field is not valid. The URL must use the "
            "HTTPS protocol and the 443 port number."
        )
    return None


def create_subscription(state: TwitchState, token: Token, request: Request) -> Response:
    if (refused := _app_token_required(token)) is not None:
        return refused
    body = request.json
    if not isinstance(body, dict):
        return error(400, "The request body is not valid JSON.")
    sub_type, version = body.get("type"), body.get("version")
    condition, transport = body.get("condition"), body.get("transport")
    if not isinstance(condition, dict):
        return error(400, "The condition field is required.")
    if not isinstance(transport, dict) or transport.get("method") != "webhook":
        # The fake speaks only the webhook transport; Twitch would also take websocket
        # and conduit.
        return error(400, "The value specified in the method field is not valid.")
    callback, secret = transport.get("callback"), transport.get("secret")
    if (problem := _callback_error(callback)) is not None:
        return error(400, problem)
    if not isinstance(secret, str) or not 10 <= len(secret) <= 100 or not secret.isascii():
        return error(400, "The length of the string in the secret field is not valid.")
    if SUBSCRIPTION_TYPES.get(str(sub_type)) != version:
        return error(400, "The combination of values in the version and type fields is not valid.")
    broadcaster = condition.get("broadcaster_user_id")
    if not isinstance(broadcaster, str) or not broadcaster:
        return error(400, "The condition object is missing one or more required fields.")
    if broadcaster not in state.users:
        return error(400, "The user specified in the condition object does not exist.")
    wanted = {"broadcaster_user_id": broadcaster}
    existing = _client_subscriptions(state, token)
    if any(s.type == sub_type and s.version == version and s.condition == wanted for s in existing):
        return error(409, "subscription already exists")
    subscription = Subscription(
        type=str(sub_type),
        version=str(version),
        condition=wanted,
        callback=str(callback),
        secret=secret,
        client_id=token.client_id,
        created_at=nano_timestamp(state.clock()),
    )
    state.subscriptions[subscription.id] = subscription
    listed = [*existing, subscription]
    return json_response(202, {"data": [subscription.as_json()], **_totals(listed)})


def list_subscriptions(state: TwitchState, token: Token, request: Request) -> Response:
    if (refused := _app_token_required(token)) is not None:
        return refused
    filters = {k: request.param(k) for k in ("status", "type", "user_id", "subscription_id")}
    given = {k: v for k, v in filters.items() if v is not None}
    if len(given) > 1:
        return error(400, "The request may specify only one filter query parameter.")
    owned = _client_subscriptions(state, token)
    data = owned
    if "status" in given:
        data = [s for s in owned if s.status == given["status"]]
    elif "type" in given:
        data = [s for s in owned if s.type == given["type"]]
    elif "user_id" in given:
        data = [s for s in owned if given["user_id"] in s.condition.values()]
    elif "subscription_id" in given:
        data = [s for s in owned if s.id == given["subscription_id"]]
    body = {"data": [s.as_json() for s in data], **_totals(owned), "pagination": {}}
    return json_response(200, body)


def delete_subscription(state: TwitchState, token: Token, request: Request) -> Response:
    if (refused := _app_token_required(token)) is not None:
        return refused
    subscription_id = request.param("id")
    if not subscription_id:
        return error(400, "The id query parameter is required.")
    found = state.subscriptions.get(subscription_id)
    if found is None or found.client_id != token.client_id:
        return error(404, "The subscription was not found.")
    del state.subscriptions[subscription_id]
    return Response(204)
