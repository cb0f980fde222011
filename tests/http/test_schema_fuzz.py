"""The HTTP API fuzzed from its own OpenAPI schema with schemathesis.

Every operation of the schema is called by four callers (nobody, a logged-in user, the
operator with the admin token, and a logged-in operator) with requests drawn from the
schema, valid ones and invalid ones, against a live server on each database. Every answer
must be documented: no 5xx, a status the operation declares, the declared content type,
headers and body, invalid input refused with a 4xx, and every error the project's JSON
error ``{"error": {"code": …, "message": …}}``. (``/ws`` is no operation of the schema:
tests/ws/test_fuzz.py fuzzes it.)

``STREAMCHAT_SCHEMA_EXAMPLES`` sets the number of generated requests per operation and
caller (default 20; besides them schemathesis sends the schema's examples and its boundary
cases); try 1,000 for a long run. Hypothesis is derandomized: a run sends what the last
one sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamchat.app import create_app
from streamchat.config import Settings
from streamchat.cookies import SESSION_COOKIE
from tests.twitch.fake import fake_twitch_server
from tests.ws.conftest import LiveServer, live_server

EXAMPLES = int(os.environ.get("STREAMCHAT_SCHEMA_EXAMPLES", "20"))
ADMIN_TOKEN = "schema-fuzz-operator-token"
#: The logged-in caller; an ID the fuzzer is unlikely to log in as (that would revoke its
#: sessions beyond max_sessions_per_user).
USER_ID = "90210902109021090210"
USER_LOGIN = "schema_fuzz_viewer"
ADMIN_OPERATIONS = {"GET /metrics"}
USER_OPERATIONS = {"GET /api/me", "PUT /api/me/favorite", "DELETE /api/me/favorite"}
CALLERS = {
    "anonymous": (False, False),
    "user": (True, False),
    "admin": (False, True),
    "user+admin": (True, True),
}


def error_shape(_ctx: CheckContext, response: schemathesis.Response, _case: Any) -> None:
    """Every 4xx and 5xx is the project's JSON error, with a code and a message."""
    if response.status_code < 400:
        return
    content_type = ";".join(response.headers.get("content-type", [""])).split(";")[0]
    assert content_type == "application/json", f"error as {content_type!r}"
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no error object in {body!r}"
    assert isinstance(error.get("code"), str), f"no code in {body!r}"
    assert error["code"], f"empty code in {body!r}"
    assert isinstance(error.get("message"), str), f"no message in {body!r}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_shape,
]

# The schema is the app's own; a test below checks that a server serves the same.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@dataclass
class FuzzServer:
    """A live server in a thread of its own: schemathesis calls it synchronously."""

    url: str
    session: str | None = field(default=None)

    def register(self, twitch_id: str, login: str) -> None:
        response = httpx.post(
            f"{self.url}/api/users", json={"twitch_id": twitch_id, "login": login}
        )
        assert response.status_code in (200, 201), response.text

    def session_cookie(self) -> dict[str, str]:
        """The logged-in caller's cookie; a new session after the fuzzer logged it out."""
        if self.session is None:
            response = httpx.post(f"{self.url}/api/login", json={"twitch_id": USER_ID})
            assert response.status_code == 200, response.text
            self.session = response.cookies[SESSION_COOKIE]
        return {SESSION_COOKIE: self.session}


@contextmanager
def serving(settings: Settings) -> Iterator[LiveServer]:
    """``live_server`` on an event loop in another thread, for as long as the block runs."""
    started = threading.Event()
    server: list[LiveServer] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        # Twitch, for the operations that ask it (adding a streamer): the fake, which knows
        # one user.
        async with fake_twitch_server() as twitch:
            twitch.add_user("pixelpaladin")
            with_twitch = settings.model_copy(
                update={
                    "twitch_client_id": twitch.client_id,
                    "twitch_client_secret": SecretStr(twitch.client_secret),
                    "twitch_id_url": twitch.id_url,
                    "twitch_api_url": twitch.api_url,
                }
            )
            async with live_server(with_twitch) as live:
                server.append(live)
                started.set()
                await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="schema-fuzz-server")
    thread.start()
    try:
        assert started.wait(60), "the server did not start within 60 s"
        if failure:
            raise failure[0]
        yield server[0]
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    if failure:
        raise failure[0]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzServer]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'streamchat.db'}"
    else:
        url = request.getfixturevalue("postgres_database").replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    # The fuzzer logs in and guesses admin tokens far more often than a person: the
    # throttles would soon answer everything with 429. Raised, not switched off.
    settings = Settings(
        database_url=url,
        admin_token=ADMIN_TOKEN,
        login_attempts_per_ip=1_000_000,
        login_attempts_per_account=1_000_000,
        admin_failures_per_ip=1_000_000,
        # Behind the token, so that both sides of it are fuzzed.
        metrics_public=False,
    )
    with serving(settings) as live:
        server = FuzzServer(live.url)
        server.register(USER_ID, USER_LOGIN)
        # The schema's example user: its login example logs in.
        server.register("1001", "viewer")
        yield server


@pytest.mark.parametrize("caller", list(CALLERS))
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_answer_is_documented(
    case: schemathesis.Case,
    caller: str,
    fuzz_server: FuzzServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged_in, admin = CALLERS[caller]
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"} if admin else None
    cookies = fuzz_server.session_cookie() if logged_in else None
    caplog.set_level(logging.WARNING)
    response = case.call_and_validate(
        base_url=fuzz_server.url, headers=headers, cookies=cookies, checks=CHECKS
    )
    label = case.operation.label
    if label == "POST /api/logout":
        fuzz_server.session = None
    # The callers are who they claim to be: refused without their credentials, never for
    # lack of them with.
    if label in ADMIN_OPERATIONS or label.split()[1].startswith("/api/admin/"):
        assert response.status_code not in (401, 403) if admin else response.status_code >= 400
    if label in USER_OPERATIONS:
        assert response.status_code != 401 if logged_in else response.status_code >= 400
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


def test_the_server_serves_the_fuzzed_schema(fuzz_server: FuzzServer) -> None:
    served = httpx.get(f"{fuzz_server.url}/openapi.json")
    assert served.status_code == 200
    assert served.json() == schema.raw_schema
