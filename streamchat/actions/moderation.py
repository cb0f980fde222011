"""Moderation, Twitch-style: the one path for every action, over WebSocket and HTTP alike.

Who may do what in a room:

* the **broadcaster** (the user whose Twitch ID is the streamer's) and **operators** (the
  admin token): everything;
* **moderators** (appointed by the broadcaster): everything but ``mod`` and ``unmod``, and
  nothing against the broadcaster or another moderator;
* **viewers**: nothing (``forbidden``).

Every action is written to the database, then every process is told (the room's rules
are read again), then the room hears of it (``moderation``, and ``room_state`` for a
mode), and the audit log records it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from streamchat.errors import Forbidden, InvalidInput, NotAuthenticated, UserNotFound
from streamchat.protocol import (
    MAX_TIMEOUT,
    Moderate,
    ModerationNotice,
    RoomState,
    UserRef,
    encode,
)
from streamchat.services import Services
from streamchat.store.moderation import MAX_TERMS, RoomRules

__all__ = [
    "OPERATOR",
    "Role",
    "moderate",
    "role_in",
]

#: Who acts with the admin token.
OPERATOR = UserRef("operator", None, "operator")
#: Slow mode's longest wait, as on Twitch.
MAX_SLOW = 120

Role = Literal["operator", "broadcaster", "moderator", "viewer"]

_BROADCASTER_ONLY = frozenset({"mod", "unmod"})
_ON_A_USER = frozenset({"ban", "unban", "timeout", "untimeout", "mod", "unmod"})
_MODES = frozenset({"slow", "unique", "terms"})


def role_in(rules: RoomRules, streamer_id: str, user: UserRef | None) -> Role | None:
    """``user``'s role in the room; None for an anonymous caller."""
    if user is None:
        return None
    if user is OPERATOR:
        return "operator"
    if user.id == streamer_id:
        return "broadcaster"
    if user.id in rules.moderators:
        return "moderator"
    return "viewer"


async def moderate(
    services: Services, actor: UserRef | None, room: str, request: Moderate
) -> dict[str, Any]:
    """Take ``request`` in ``room`` as ``actor`` (:data:`OPERATOR` for the admin token).

    Returns what the action did (``deleted`` seqs, ``through``), for the reply.
    """
    if actor is None:
        raise NotAuthenticated("log in to moderate")
    rooms = services.rooms
    streamer_id = await rooms.resolve(room)
    rules = await rooms.rules.get(streamer_id)
    role = role_in(rules, streamer_id, actor)
    action = request.action
    if role == "viewer" or (action in _BROADCASTER_ONLY and role == "moderator"):
        who = "the broadcaster" if action in _BROADCASTER_ONLY else "the broadcaster and moderators"
        raise Forbidden(f"only {who} may {action} in this room")
    _check(request)

    target: UserRef | None = None
    if action in _ON_A_USER:
        assert request.user is not None
        found = await services.users.find(request.user)
        if found is None and request.user.isdigit():
            # A user without a login (dev mode) is named by their Twitch ID.
            found = await services.users.get(request.user)
        if found is None:
            raise UserNotFound(f"no user {request.user!r}")
        target = UserRef(found.twitch_id, found.login, found.display_name)
        _may_act_on(rules, streamer_id, role, action, target)

    store = services.moderation
    by = actor.id
    result: dict[str, Any] = {}
    notice: dict[str, Any] = {}
    if action in ("ban", "timeout"):
        assert target is not None
        until = None
        if action == "timeout":
            assert request.seconds is not None
            until = datetime.now(UTC) + timedelta(seconds=request.seconds)
            notice["seconds"] = request.seconds
        await store.ban(streamer_id, target.id, until=until, reason=request.reason or "", by=by)
        if action == "ban" and target.id in rules.moderators:
            await store.remove_moderator(streamer_id, target.id)
        await rooms.rules.changed(streamer_id)
        # As on Twitch: what they said lately goes with them.
        result["deleted"] = await rooms.redact(room, await rooms.messages_of(room, target.id))
    elif action in ("unban", "untimeout"):
        assert target is not None
        await store.unban(streamer_id, target.id, timeouts_only=action == "untimeout")
        await rooms.rules.changed(streamer_id)
    elif action in ("mod", "unmod"):
        assert target is not None
        if action == "mod":
            await store.add_moderator(streamer_id, target.id, by=by)
        else:
            await store.remove_moderator(streamer_id, target.id)
        await rooms.rules.changed(streamer_id)
    elif action == "delete":
        assert request.seq is not None
        author = await rooms.author_of(room, request.seq)
        if (
            author is not None
            and role == "moderator"
            and (author == streamer_id or author in rules.moderators)
        ):
            raise Forbidden("moderators cannot delete the broadcaster's or a moderator's messages")
        result["deleted"] = await rooms.redact(room, [request.seq])
        notice["seq"] = request.seq
    elif action == "clear":
        through = await rooms.last_seq(room)
        await rooms.redact(room, through=through)
        result["through"] = notice["through"] = through
    else:  # a mode
        await store.set_modes(
            streamer_id,
            slow_seconds=request.seconds if action == "slow" else None,
            unique_chat=request.enabled if action == "unique" else None,
            add_terms=[_term(t) for t in request.add or ()] if action == "terms" else (),
            remove_terms=[_term(t) for t in request.remove or ()] if action == "terms" else (),
        )
        await rooms.rules.changed(streamer_id)
        if action == "slow":
            notice["seconds"] = request.seconds

    frames = [
        encode(
            ModerationNotice(
                room=room,
                action=action,
                by=actor,
                user=target,
                seq=notice.get("seq"),
                seconds=notice.get("seconds"),
                through=notice.get("through"),
            )
        )
    ]
    if action in _MODES:
        state = (await rooms.rules.get(streamer_id)).modes()
        frames.append(encode(RoomState(room=room, **state)))
    await rooms.events.send(room, *frames)
    await store.record(
        streamer_id,
        action,
        actor_id=by,
        target_id=target.id if target else None,
        seq=request.seq if action == "delete" else result.get("through"),
        seconds=request.seconds,
        reason=request.reason or "",
        details=_details(request, result),
    )
    return result


def _check(request: Moderate) -> None:
    """The arguments ``request.action`` needs, in bounds."""
    action = request.action
    if action in _ON_A_USER and not request.user:
        raise InvalidInput(f"{action} needs the 'user' (a login)")
    if action == "timeout" and not (
        request.seconds is not None and 1 <= request.seconds <= MAX_TIMEOUT
    ):
        raise InvalidInput(f"timeout needs 'seconds' from 1 to {MAX_TIMEOUT}")
    if action == "slow" and not (request.seconds is not None and 0 <= request.seconds <= MAX_SLOW):
        raise InvalidInput(f"slow needs 'seconds' from 0 (off) to {MAX_SLOW}")
    if action == "delete" and not (request.seq is not None and request.seq >= 1):
        raise InvalidInput("delete needs the 'seq' of a message")
    if action == "unique" and request.enabled is None:
        raise InvalidInput("unique needs 'enabled' (true or false)")
    if action == "terms":
        if not request.add and not request.remove:
            raise InvalidInput("terms needs 'add' or 'remove' (lists of terms)")
        if len(request.add or ()) > MAX_TERMS:
            raise InvalidInput(f"at most {MAX_TERMS} terms")
        for term in (*(request.add or ()), *(request.remove or ())):
            if not term.strip() or any(not ch.isprintable() for ch in term):
                raise InvalidInput(f"not a term: {term!r}")


def _term(term: str) -> str:
    return " ".join(term.casefold().split())


def _may_act_on(
    rules: RoomRules, streamer_id: str, role: Role | None, action: str, target: UserRef
) -> None:
    if target.id == streamer_id and action in ("ban", "timeout", "mod", "unmod"):
        raise Forbidden(f"the broadcaster cannot be the target of {action}")
    if role == "moderator" and (target.id == streamer_id or target.id in rules.moderators):
        raise Forbidden("moderators cannot act on the broadcaster or another moderator")


def _details(request: Moderate, result: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if request.action == "unique":
        details["enabled"] = request.enabled
    if request.action == "terms":
        details["add"] = [_term(t) for t in request.add or ()]
        details["remove"] = [_term(t) for t in request.remove or ()]
    if result.get("deleted"):
        details["deleted"] = len(result["deleted"])
    return details
