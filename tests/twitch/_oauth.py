"""The fake's ``id.twitch.tv``: ``/oauth2/authorize``, ``/token``, ``/validate`` and
``/revoke``.

Error bodies are ``{"status": ..., "message": ...}`` as Twitch's identity service writes
them (Helix adds an ``"error"`` field; ``/oauth2/token`` does too for a bad refresh token).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.twitch._http import Request, Response, json_response
from tests.twitch._state import AuthorizationCode, Token, TwitchState, random_token

__all__ = ["authorize", "revoke", "token", "validate"]

# The text Twitch puts in the redirect when the user clicks "Cancel", and when the
# redirect_uri is not one the app registered.
DENIED = "The user denied you access"
REDIRECT_MISMATCH = "Parameter redirect_uri does not match registered URI"

_LOGIN_PAGE = b"<!DOCTYPE html><title>Log in - Twitch</title><h1>Log in to Twitch</h1>"


def _error(status: int, message: str) -> Response:
    return json_response(status, {"status": status, "message": message})


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in uri else "?"
    location = uri + separator + urlencode(params)
    return Response(302, b"", {"Location": location, "Content-Length": "0"})


def _params(request: Request) -> dict[str, str]:
    """Query parameters overlaid with the form body: Twitch reads both on its POST
    endpoints (its documentation sends the form)."""
    out = {k: v[0] for k, v in request.query.items()}
    out.update({k: v[0] for k, v in request.form.items()})
    return out


def authorize(state: TwitchState, request: Request) -> Response:
    """What the browser gets after the consent page: a redirect with a code, or with an
    error, back to the app."""
    params = {k: v[0] for k, v in request.query.items()}
    client_id = params.get("client_id", "")
    if not client_id:
        return _error(400, "missing client id")
    if client_id != state.client_id:
        return _error(400, "invalid client")
    redirect_uri = params.get("redirect_uri", "")
    echo_state = {"state": params["state"]} if "state" in params else {}
    if redirect_uri not in state.redirect_uris:
        # Twitch does not refuse: it sends the browser to the app's first registered URL.
        return _redirect(
            state.redirect_uris[0],
            {"error": "redirect_mismatch", "error_description": REDIRECT_MISMATCH} | echo_state,
        )
    if params.get("response_type") != "code":
        return _error(400, "unsupported response type")
    user_id = state.signed_in_user_id
    if user_id is None or user_id not in state.users:
        return Response(200, _LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
    if not state.grants_consent:
        return _redirect(
            redirect_uri,
            {"error": "access_denied", "error_description": DENIED} | echo_state,
        )
    scopes = params.get("scope", "").split()
    code = AuthorizationCode(
        code=random_token(),
        client_id=client_id,
        redirect_uri=redirect_uri,
        user_id=user_id,
        scopes=scopes,
        expires_at=state.clock() + state.code_ttl,
    )
    state.codes[code.code] = code
    return _redirect(redirect_uri, {"code": code.code, "scope": " ".join(scopes)} | echo_state)


def _user_token_body(state: TwitchState, token: Token) -> dict[str, Any]:
    return {
        "access_token": token.access_token,
        "expires_in": int(token.expires_at - state.clock()),
        "refresh_token": token.refresh_token,
        "scope": list(token.scopes),
        "token_type": "bearer",
    }


def token(state: TwitchState, request: Request) -> Response:
    """``POST /oauth2/token``: the three grants a server uses."""
    params = _params(request)
    client_id = params.get("client_id", "")
    if not client_id:
        return _error(400, "missing client id")
    if client_id != state.client_id:
        return _error(400, "invalid client")
    secret = params.get("client_secret", "")
    if not secret:
        return _error(400, "missing client secret")
    if secret != state.client_secret:
        return _error(403, "invalid client secret")
    grant_type = params.get("grant_type", "")
    if grant_type == "client_credentials":
        issued = state.issue_token(user_id=None, scopes=[])
        return json_response(
            200,
            {
                "access_token": issued.access_token,
                "expires_in": int(issued.expires_at - state.clock()),
                "token_type": "bearer",
            },
        )
    if grant_type == "authorization_code":
        return _exchange_code(state, params)
    if grant_type == "refresh_token":
        return _refresh(state, params)
    return _error(400, "unsupported grant type")


def _exchange_code(state: TwitchState, params: dict[str, str]) -> Response:
    code = state.codes.get(params.get("code", ""))
    if (
        code is None
        or code.used
        or code.client_id != params["client_id"]
        or state.clock() >= code.expires_at
    ):
        return _error(400, "Invalid authorization code")
    if params.get("redirect_uri", "") != code.redirect_uri:
        return _error(400, REDIRECT_MISMATCH)
    code.used = True
    issued = state.issue_token(user_id=code.user_id, scopes=code.scopes)
    return json_response(200, _user_token_body(state, issued))


def _refresh(state: TwitchState, params: dict[str, str]) -> Response:
    refresh_token = params.get("refresh_token", "")
    old = next(
        (
            t
            for t in state.tokens.values()
            if refresh_token
            and t.refresh_token == refresh_token
            and t.client_id == params["client_id"]
        ),
        None,
    )
    # A revoked grant (the user disconnected the app) cannot be refreshed; an access token
    # that merely expired can.
    if old is None or old.user_id is None or not old.refreshable:
        return json_response(
            400, {"error": "Bad Request", "status": 400, "message": "Invalid refresh token"}
        )
    old.revoked = True
    old.refreshable = False
    issued = state.issue_token(user_id=old.user_id, scopes=old.scopes)
    return json_response(200, _user_token_body(state, issued))


def _bearer(request: Request, *prefixes: str) -> str | None:
    value: str | None = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() not in prefixes:
        return ""
    return credentials.strip()


def validate(state: TwitchState, request: Request) -> Response:
    """``GET /oauth2/validate`` with ``Authorization: OAuth <token>``."""
    access_token = _bearer(request, "oauth", "bearer")
    if access_token is None:
        return _error(401, "missing authorization token")
    valid = state.token(access_token)
    if valid is None:
        return _error(401, "invalid access token")
    body: dict[str, Any] = {"client_id": valid.client_id}
    if valid.user_id is not None:
        body["login"] = state.users[valid.user_id].login
    body["scopes"] = list(valid.scopes)
    if valid.user_id is not None:
        body["user_id"] = valid.user_id
    body["expires_in"] = int(valid.expires_at - state.clock())
    return json_response(200, body)


def revoke(state: TwitchState, request: Request) -> Response:
    """``POST /oauth2/revoke``: 200 with no body; revoking an access token ends its grant,
    so its refresh token goes too."""
    params = _params(request)
    client_id = params.get("client_id", "")
    if not client_id:
        return _error(400, "missing client id")
    if client_id != state.client_id:
        return _error(404, "client does not exist")
    revoked = state.tokens.get(params.get("token", ""))
    if revoked is None or revoked.client_id != client_id:
        return _error(400, "Invalid token")
    revoked.revoked = True
    revoked.refreshable = False
    return Response(200)
