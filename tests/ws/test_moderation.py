"""Moderation end to end, over WebSocket and HTTP: roles, every action, every refusal, and
what the room sees (``moderation``, ``room_state``, tombstones)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from streamchat.client import ChatClient, ChatError
from streamchat.protocol import ModerationNotice, RoomState
from tests.helpers import messages
from tests.ws.conftest import ROOM, LiveServer, ServerFactory

ADMIN_TOKEN = "operator-token-0123456789"


@dataclass
class Cast:
    """The room's people: its broadcaster, a moderator, two viewers; a session each."""

    server: LiveServer
    streamer_id: str
    broadcaster: str
    mod: str
    viewer: str
    other: str

    def connect(self, who: str) -> Any:
        return self.server.connect(getattr(self, who))


@pytest.fixture
async def cast(server_factory: ServerFactory) -> AsyncIterator[Cast]:
    async with server_factory(admin_token=ADMIN_TOKEN) as server:
        streamer = await server.services.streamers.find(ROOM)
        assert streamer is not None
        people = Cast(
            server,
            streamer.id,
            broadcaster=await server.login(streamer.id, ROOM),
            mod=await server.login("2001", "mod_mia"),
            viewer=await server.login("3001", "vic"),
            other=await server.login("3002", "olga"),
        )
        async with people.connect("broadcaster") as chat:
            await chat.moderate(ROOM, "mod", user="mod_mia")
        yield people


async def next_of(chat: ChatClient, kind: type, within: float = 5.0) -> Any:
    async with asyncio.timeout(within):
        while True:
            event = await chat.next_event(None)
            if isinstance(event, kind):
                return event


async def refused(call: Any, code: str) -> ChatError:
    with pytest.raises(ChatError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def test_viewers_may_not_moderate(cast: Cast) -> None:
    async with cast.connect("viewer") as chat:
        for action, args in (
            ("ban", {"user": "olga"}),
            ("timeout", {"user": "olga", "seconds": 10}),
            ("delete", {"seq": 1}),
            ("clear", {}),
            ("slow", {"seconds": 5}),
            ("unique", {"enabled": True}),
            ("terms", {"add": ["x"]}),
            ("mod", {"user": "olga"}),
        ):
            await refused(chat.moderate(ROOM, action, **args), "forbidden")
    async with cast.server.connect() as anonymous:
        await refused(anonymous.moderate(ROOM, "clear"), "not_authenticated")


async def test_moderators_cannot_appoint_or_touch_the_staff(cast: Cast) -> None:
    async with cast.connect("mod") as chat:
        await refused(chat.moderate(ROOM, "mod", user="vic"), "forbidden")
        await refused(chat.moderate(ROOM, "unmod", user="mod_mia"), "forbidden")
        await refused(chat.moderate(ROOM, "ban", user=ROOM), "forbidden")
        await refused(chat.moderate(ROOM, "timeout", user="mod_mia", seconds=5), "forbidden")
    async with cast.connect("broadcaster") as chat:
        await chat.moderate(ROOM, "mod", user="vic")
    async with cast.connect("mod") as chat:
        await refused(chat.moderate(ROOM, "ban", user="vic"), "forbidden")
    async with cast.connect("broadcaster") as chat:
        await refused(chat.moderate(ROOM, "ban", user=ROOM), "forbidden")
        await refused(chat.moderate(ROOM, "ban", user="nobody_here"), "user_not_found")
        await refused(chat.moderate("nobody", "clear"), "unknown_room")


async def test_a_ban_stops_a_user_and_takes_their_messages(cast: Cast) -> None:
    async with (
        cast.connect("viewer") as vic,
        cast.connect("other") as olga,
        cast.connect("mod") as mod,
    ):
        for chat in (vic, olga, mod):
            await chat.subscribe(ROOM)
        await vic.publish(ROOM, "spam 1")
        await olga.publish(ROOM, "hello")
        await vic.publish(ROOM, "spam 2")
        await messages(olga, 3)
        done = await mod.moderate(ROOM, "ban", user="vic", reason="spam")
        assert done.deleted == [1, 3]
        notice = await next_of(olga, ModerationNotice)
        assert (notice.action, notice.user.login, notice.by.login) == ("ban", "vic", "mod_mia")
        error = await refused(vic.publish(ROOM, "let me back"), "banned")
        assert "banned" in error.reason
        history = await olga.history(ROOM)
        assert [(m.seq, m.deleted, m.text) for m in history] == [
            (1, True, ""),
            (2, False, "hello"),
            (3, True, ""),
        ]
        await mod.moderate(ROOM, "unban", user="vic")
        assert (await next_of(olga, ModerationNotice)).action == "unban"
        assert (await vic.publish(ROOM, "sorry")).seq == 4


async def test_a_timeout_ends_by_itself_or_when_lifted(cast: Cast) -> None:
    async with cast.connect("viewer") as vic, cast.connect("mod") as mod:
        await mod.moderate(ROOM, "timeout", user="vic", seconds=600)
        error = await refused(vic.publish(ROOM, "hi"), "timed_out")
        assert 590 < error.details["retry_after"] <= 600
        await mod.moderate(ROOM, "untimeout", user="vic")
        await vic.publish(ROOM, "back")
        await mod.moderate(ROOM, "timeout", user="vic", seconds=1)
        await refused(vic.publish(ROOM, "too soon"), "timed_out")
        await asyncio.sleep(1.1)  # the timeout's own length: nothing to wait on but time
        await vic.publish(ROOM, "served my time")
        # Bounds.
        await refused(mod.moderate(ROOM, "timeout", user="vic", seconds=0), "invalid_input")
        # Beyond two weeks: refused by the frame's own bounds.
        await refused(mod.moderate(ROOM, "timeout", user="vic", seconds=1_209_601), "invalid_frame")


async def test_delete_and_clear_leave_tombstones_for_every_reader(cast: Cast) -> None:
    async with cast.connect("viewer") as vic, cast.connect("mod") as mod:
        sub = await vic.subscribe(ROOM)
        for i in range(1, 6):
            await vic.publish(ROOM, f"m{i}")
        await messages(vic, 5)
        assert (await mod.moderate(ROOM, "delete", seq=2)).deleted == [2]
        notice = await next_of(vic, ModerationNotice)
        assert (notice.action, notice.seq) == ("delete", 2)
        await refused(mod.moderate(ROOM, "delete", seq=99), "unknown_message")

        # Recovering across the deletion: a tombstone, not a gap.
        async with cast.connect("other") as olga:
            again = await olga.subscribe(ROOM, since=1, epoch=sub.epoch)
            assert again.recovered
            replayed = await messages(olga, 4)
            assert [(m.seq, m.deleted) for m in replayed] == [
                (2, True),
                (3, False),
                (4, False),
                (5, False),
            ]
        async with httpx.AsyncClient(base_url=cast.server.url) as http:
            page = (await http.get(f"/api/rooms/{ROOM}/messages")).json()["messages"]
        assert page[1] == {"type": "message", "room": ROOM, "seq": 2, "deleted": True}
        assert [m.get("text") for m in page] == ["m1", None, "m3", "m4", "m5"]

        done = await mod.moderate(ROOM, "clear")
        assert done.through == 5
        assert (await next_of(vic, ModerationNotice)).through == 5
        assert all(m.deleted for m in await vic.history(ROOM))
        # New messages after a clear are kept.
        ack = await vic.publish(ROOM, "fresh start")
        assert [m.text for m in await vic.history(ROOM)][-1] == "fresh start"
        assert ack.seq == 6


async def test_moderators_cannot_delete_the_staffs_messages(cast: Cast) -> None:
    async with cast.connect("broadcaster") as host, cast.connect("mod") as mod:
        seq = (await host.publish(ROOM, "welcome all")).seq
        await refused(mod.moderate(ROOM, "delete", seq=seq), "forbidden")
        assert (await host.moderate(ROOM, "delete", seq=seq)).deleted == [seq]


async def test_slow_unique_and_blocked_terms(cast: Cast) -> None:
    async with (
        cast.connect("viewer") as vic,
        cast.connect("mod") as mod,
        cast.connect("other") as olga,
    ):
        first = await olga.subscribe(ROOM)
        assert first.room_state == {"slow": 0, "unique": False, "blocked_terms": 0}

        await mod.moderate(ROOM, "slow", seconds=30)
        state = await next_of(olga, RoomState)
        assert (state.slow, state.unique) == (30, False)
        await vic.publish(ROOM, "one")
        error = await refused(vic.publish(ROOM, "two"), "slow_mode")
        assert 25 < error.details["retry_after"] <= 30
        await mod.publish(ROOM, "moderators are exempt")
        await mod.publish(ROOM, "from slow mode")
        await mod.moderate(ROOM, "slow", seconds=0)
        assert (await next_of(olga, RoomState)).slow == 0

        await mod.moderate(ROOM, "unique", enabled=True)
        assert (await next_of(olga, RoomState)).unique is True
        await olga.publish(ROOM, "same thing")
        await refused(olga.publish(ROOM, "Same   THING"), "duplicate")
        await olga.publish(ROOM, "something else")

        await mod.moderate(ROOM, "terms", add=["Badword", "two words"])
        assert (await next_of(olga, RoomState)).blocked_terms == 2
        await refused(vic.publish(ROOM, "what a BADWORD!"), "blocked_term")
        await refused(vic.publish(ROOM, "these are two   words"), "blocked_term")
        await vic.publish(ROOM, "badwords is another word")  # whole words only
        await mod.publish(ROOM, "badword")  # staff are exempt
        await mod.moderate(ROOM, "terms", remove=["badword"])
        await vic.publish(ROOM, "badword now allowed")

        sub = await vic.subscribe(ROOM)
        assert sub.room_state == {"slow": 0, "unique": True, "blocked_terms": 1}
        for action, args in (
            ("slow", {"seconds": 121}),
            ("unique", {}),
            ("terms", {}),
            ("delete", {}),
            ("ban", {}),
        ):
            with pytest.raises(ChatError) as caught:
                await mod.moderate(ROOM, action, **args)
            assert caught.value.code in ("invalid_input", "invalid_frame"), action


async def test_the_rate_limit_spares_the_staff(cast: Cast) -> None:
    async with cast.connect("mod") as mod, cast.connect("viewer") as vic:
        for i in range(20):
            await vic.publish(ROOM, f"v{i}")
        await refused(vic.publish(ROOM, "21st"), "rate_limited")
        for i in range(40):
            await mod.publish(ROOM, f"m{i}")


async def test_the_same_over_http(cast: Cast) -> None:
    url = cast.server.url

    def as_(who: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, cookies={"streamchat_session": getattr(cast, who)})

    async with as_("mod") as mod, as_("viewer") as vic, httpx.AsyncClient(base_url=url) as anon:
        state = (await mod.get(f"/api/rooms/{ROOM}")).json()
        assert state["role"] == "moderator"
        assert state["modes"] == {"slow": 0, "unique": False, "blocked_terms": 0}
        assert "2001" in state["moderators"]
        viewer_state = (await vic.get(f"/api/rooms/{ROOM}")).json()
        assert viewer_state["role"] == "viewer"
        assert viewer_state["moderators"] is None
        assert (await anon.get(f"/api/rooms/{ROOM}")).json()["role"] is None
        assert (await anon.get("/api/rooms/nobody")).status_code == 404

        refused_ = await vic.post(f"/api/rooms/{ROOM}/moderation", json={"action": "clear"})
        assert (refused_.status_code, refused_.json()["error"]["code"]) == (403, "forbidden")
        anonymous = await anon.post(f"/api/rooms/{ROOM}/moderation", json={"action": "clear"})
        assert anonymous.status_code == 401
        bad = await mod.post(
            f"/api/rooms/{ROOM}/moderation", json={"action": "timeout", "user": "vic"}
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_input")
        unknown = await mod.post(f"/api/rooms/{ROOM}/moderation", json={"action": "explode"})
        assert unknown.status_code == 422

        done = await mod.post(
            f"/api/rooms/{ROOM}/moderation",
            json={"action": "timeout", "user": "vic", "seconds": 300, "reason": "calm down"},
        )
        assert done.status_code == 200, done.text
        assert done.json()["action"] == "timeout"
        async with cast.connect("viewer") as chat:
            await refused(chat.publish(ROOM, "hi"), "timed_out")

        # An operator acts everywhere with the admin token.
        operator = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        lifted = await anon.post(
            f"/api/rooms/{ROOM}/moderation",
            json={"action": "untimeout", "user": "vic"},
            headers=operator,
        )
        assert lifted.status_code == 200, lifted.text
        assert (await anon.get(f"/api/rooms/{ROOM}", headers=operator)).json()["role"] == "operator"
        wrong = await anon.post(
            f"/api/rooms/{ROOM}/moderation",
            json={"action": "clear"},
            headers={"Authorization": "Bearer wrong"},
        )
        assert wrong.status_code == 403

        log = await mod.get(f"/api/rooms/{ROOM}/moderation/log")
        assert log.status_code == 200, log.text
        entries = log.json()["entries"]
        assert [(e["action"], e["by"], e["user"]) for e in entries[:3]] == [
            ("untimeout", "operator", "3001"),
            ("timeout", "2001", "3001"),
            ("mod", cast.streamer_id, "2001"),
        ]
        assert entries[1]["reason"] == "calm down"
        assert entries[1]["seconds"] == 300
        assert (await vic.get(f"/api/rooms/{ROOM}/moderation/log")).status_code == 403
        assert (await anon.get(f"/api/rooms/{ROOM}/moderation/log")).status_code == 401


async def test_rules_survive_a_restart(server_factory: ServerFactory) -> None:
    async with server_factory() as server:
        streamer = await server.services.streamers.find(ROOM)
        assert streamer is not None
        host = await server.login(streamer.id, ROOM)
        vic = await server.login("3001", "vic")
        await server.login("2001", "mod_mia")
        async with server.connect(host) as chat:
            await chat.moderate(ROOM, "ban", user="vic")
            await chat.moderate(ROOM, "mod", user="mod_mia")
            await chat.moderate(ROOM, "slow", seconds=10)
    async with server_factory() as server, server.connect(vic) as chat:
        sub = await chat.subscribe(ROOM)
        assert sub.room_state is not None
        assert sub.room_state["slow"] == 10
        await refused(chat.publish(ROOM, "am I still banned?"), "banned")
        mia = await server.login("2001", "mod_mia")
        cookies = {"streamchat_session": mia}
        async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as http:
            role = (await http.get(f"/api/rooms/{ROOM}")).json()
        assert role["role"] == "moderator"
