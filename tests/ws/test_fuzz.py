"""Frames fuzzed with hypothesis: every one is answered by an error (or a reply), or closed
with a documented code; no traceback, and nothing is left behind.

``STREAMCHAT_FUZZ_EXAMPLES`` raises the number of cases (CI runs 10,000 through the
decoder and 2,000 through a live server; try 200,000 for a long run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamchat.protocol import Request, RequestError, decode_requests, error_frame
from tests.helpers import wait_for
from tests.ws.conftest import ROOM, LiveServer, ServerFactory, ws_url

EXAMPLES = int(os.environ.get("STREAMCHAT_FUZZ_EXAMPLES", "10000"))
LIVE_EXAMPLES = max(1, EXAMPLES // 5)
TYPES = ["subscribe", "unsubscribe", "publish", "history", "presence", "ping"]
#: What a server may close a fuzzing client with (docs/protocol.md, close codes).
DOCUMENTED_CLOSES = {1007, 1008, 1009}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    # Control, bidi and separator characters, lone surrogates' neighbours.
    | st.text(alphabet=st.sampled_from("\x00\x1b\x7f\u0085\u200e\u202e\u2028\u2029\ufeff"))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES) | values,
        "id": st.integers() | st.text(max_size=10) | values,
        "room": st.sampled_from([ROOM, "nobody", ""]) | values,
        "since": st.integers(min_value=-5, max_value=2**64) | values,
        "epoch": st.text(max_size=20) | values,
        "text": st.text(max_size=600) | values,
        "nonce": st.text(max_size=70) | values,
        "before": st.integers(min_value=-5, max_value=2**64) | values,
        "limit": st.integers(min_value=-5, max_value=2**64) | values,
    },
)
lines = requests.map(json.dumps) | values.map(json.dumps) | st.text(max_size=80)
frames = (
    st.lists(lines, min_size=1, max_size=8).map("\n".join)
    | st.integers(min_value=1, max_value=4000).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(min_value=1, max_value=3000).map(
        lambda depth: '{"type":"ping","x":' + "{" * 0 + "[" * depth + "]" * depth + "}"
    )
    | st.integers(min_value=60, max_value=300).map(
        lambda n: "\n".join('{"type":"ping"}' for _ in range(n))
    )
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=frames | st.binary(max_size=300))
def test_the_decoder_answers_everything(data: str | bytes) -> None:
    for item in decode_requests(data):
        assert isinstance(item, RequestError | Request)
        if isinstance(item, RequestError):
            # Every refusal can be sent back as an error frame.
            frame = msgspec.json.decode(error_frame(item.id, item.error))
            assert frame["type"] == "error"
            assert frame["code"]


class _Client:
    """One fuzzing connection, reopened whenever the server closes it."""

    def __init__(self, server: LiveServer) -> None:
        self.url = ws_url(server)
        self.ws: ClientConnection | None = None
        self.closes: list[int | None] = []
        self.ids = itertools.count()
        self.history: list[str | bytes] = []

    async def send(self, data: str | bytes) -> None:
        if self.ws is None:
            self.ws = await connect(self.url, max_size=None)
        ws = self.ws
        marker = f"fuzz-{next(self.ids)}"
        self.history.append(data)
        try:
            await ws.send(data)
            # Everything the frame caused comes before the answer to this ping.
            await ws.send(json.dumps({"type": "ping", "id": marker}))
            async with asyncio.timeout(10):
                while True:
                    for line in str(await ws.recv()).split("\n"):
                        frame = json.loads(line)
                        assert frame["type"] != "error" or frame["code"] != "unavailable", frame
                        if frame.get("id") == marker and frame["type"] in ("pong", "error"):
                            return
        except TimeoutError:
            raise AssertionError(
                f"no answer to {data!r:.200} after {self.history[-3:]!r:.600}"
            ) from None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            self.closes.append(code)
            assert code in DOCUMENTED_CLOSES, code
            self.ws = None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def fuzz_server(server_factory: ServerFactory) -> Any:
    # Rate limits off: the fuzzer would otherwise mostly meet too_many_requests.
    async with server_factory(rate_limit=False) as server:
        yield server


async def test_a_live_server_answers_every_frame(
    fuzz_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = _Client(fuzz_server)

    @settings(
        max_examples=LIVE_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=frames | st.binary(max_size=300))
    def one(data: str | bytes) -> None:
        sent.append(data)

    sent: list[str | bytes] = []
    one()  # draw the cases; they go out below, on one event loop
    try:
        for data in sent:
            await client.send(data)
    finally:
        await client.close()
    caplog.set_level(logging.WARNING)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    services = fuzz_server.services
    await wait_for(
        lambda: len(services.connections) == 0 and services.rooms.subscriptions == 0,
        within=10,
        what="every connection closed and out of its rooms",
    )
