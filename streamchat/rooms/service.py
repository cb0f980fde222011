"""The room service: the one place where chat messages are validated, stored and published.

Every step of a chat message's life that is not transport lives here: the room
must exist, the text must be acceptable, the sender must be logged in and
within the rate limit; then the message is stored (the pub/sub store assigns
its sequence number) and only then published and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from streamchat.batching import BatchedLookup
from streamchat.errors import (
    Banned,
    BlockedTerm,
    Duplicate,
    HistoryTrimmed,
    InvalidText,
    NotAuthenticated,
    RateLimited,
    TimedOut,
    UnknownMessage,
    UnknownRoom,
)
from streamchat.protocol import (
    MAX_HISTORY,
    MAX_TEXT_LENGTH,
    ChatMessage,
    EventFrame,
    Join,
    Leave,
    Subscribed,
    UserRef,
    encode,
    error_frame,
    message_frame,
)
from streamchat.pubsub import Message, PubSub, PubSubError
from streamchat.rooms.events import (
    BROADCAST_CHANNEL,
    DIRECTORY_CHANNEL,
    RoomBroadcast,
    RoomEvents,
)
from streamchat.rooms.feeds import Member, RoomFeeds, channel_of
from streamchat.rooms.moderation import (
    Allowance,
    LocalSenders,
    RoomRulesCache,
    Senders,
    blocked_term,
)
from streamchat.rooms.presence import PresenceTracker
from streamchat.rooms.ratelimit import RecentKeys
from streamchat.store.moderation import ModerationStore, RoomRules
from streamchat.store.streamers import StreamerStore

__all__ = ["Outgoing", "Posted", "RoomLimits", "RoomService"]

log = logging.getLogger("streamchat.rooms")

#: Seconds a room's streamer is believed to exist before it is looked up again.
_ROOM_TTL = 60.0
#: Joins and leaves waiting to be announced; past this, the oldest are dropped.
_MAX_NOTICES = 10_000
#: How long a join or leave notice waits for presence to be stored (seconds).
_PRESENCE_WRITE_WAIT = 2.0
_chat_decoder = msgspec.json.Decoder(ChatMessage)
#: How many of a room's newest messages a ban or timeout looks through for the user's.
_BAN_SCAN = 1000
_broadcast_decoder = msgspec.json.Decoder(RoomBroadcast)


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """Twitch's own chat limits: 20 messages per 30 s, 100 for a streamer at home."""

    enabled: bool = True
    window: float = 30.0
    messages: int = 20
    streamer_messages: int = 100
    #: Joins and leaves are announced while at most this many users are present.
    announce_presence_at_most: int = 1000


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A checked chat message, encoded once, ready to be stored and published."""

    room: str
    message_id: str
    body: bytes
    dedupe_key: str | None
    #: The rate limiter's key this message was counted under, if it was: a message
    #: that is not stored after all (a failure, a retried nonce) is taken back.
    counted: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """A stored chat message, as acknowledged to its sender."""

    room: str
    seq: int
    message_id: str


#: Cc (C0 and C1 controls, newlines included), Cs (lone surrogates), Zl and Zp
#: (line and paragraph separators): characters that break a line of chat.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def _check_text(text: str) -> None:
    if not text.strip():
        raise InvalidText("text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidText(f"text is longer than {MAX_TEXT_LENGTH} characters")
    if (found := _FORBIDDEN.search(text)) is not None:
        raise InvalidText(f"text holds a control character (U+{ord(found.group()):04X})")


class RoomService:
    """Rooms are the streamers: a room is named by its streamer's login."""

    def __init__(
        self,
        pubsub: PubSub,
        streamers: StreamerStore,
        presence: PresenceTracker,
        *,
        limits: RoomLimits | None = None,
        flush_interval: float = 0.005,
        on_sent: Callable[[float], None] | None = None,
        moderation: ModerationStore | None = None,
        senders: Senders | None = None,
    ) -> None:
        self._pubsub = pubsub
        self._streamers = streamers
        self._presence = presence
        self._feeds = RoomFeeds(pubsub, flush_interval=flush_interval)
        self.events = RoomEvents(pubsub)
        # Members watching the streamer directory.
        self._watchers: set[Member] = set()
        #: Chat messages stored by this process (retries of a stored nonce not counted).
        self.published = 0
        # Told how long each message took to store and publish (seconds).
        self._on_sent = on_sent
        self._limits = limits or RoomLimits()
        #: Each room's moderation, as this process knows it.
        self.rules = RoomRulesCache(moderation, pubsub)
        # Counts each user's messages for the rate limit, slow and unique modes.
        self._senders: Senders = senders or LocalSenders()
        # Nonces published through this process lately: their retries skip the limiter.
        self._nonces = RecentKeys(ttl=self._limits.window)
        # login -> (streamer ID, until when it is believed): a streamer an operator
        # removed on another process stops being a room here within _ROOM_TTL.
        self._rooms: dict[str, tuple[str, float]] = {}
        # A burst of first subscriptions (a restart, a raid) asks for many rooms at once.
        self._lookup = BatchedLookup(streamers.ids_by_login)
        # Joins and leaves waiting for presence to be stored before they are announced.
        self._notices: deque[tuple[str, Join | Leave]] = deque(maxlen=_MAX_NOTICES)
        self._notices_waiting = asyncio.Event()

    async def resolve(self, room: str) -> str:
        """The streamer ID of ``room``; :class:`UnknownRoom` unless it exists."""
        known = self._rooms.get(room)
        now = time.monotonic()
        if known is not None and known[1] > now:
            return known[0]
        streamer_id = await self._lookup.get(room)
        if streamer_id is None:
            self._rooms.pop(room, None)
            raise UnknownRoom(f"no room {room!r}")
        self._rooms[room] = (streamer_id, now + _ROOM_TTL)
        return streamer_id

    def forget(self, room: str) -> None:
        """Drop what this process remembers of ``room`` (its streamer was removed)."""
        self._rooms.pop(room, None)

    # -- writing ---------------------------------------------------------------------

    async def post(
        self, user: UserRef | None, room: str, text: str, *, nonce: str | None = None
    ) -> Posted:
        """Store a chat message, then publish it; return what the sender is acked with."""
        return await self.send(await self.prepare(user, room, text, nonce=nonce))

    async def prepare(
        self, user: UserRef | None, room: str, text: str, *, nonce: str | None = None
    ) -> Outgoing:
        """Check a chat message and count it against the rate limit; nothing is stored yet.

        Preparing messages one after the other and then sending them stores them
        in that order, even when the sends overlap (see :meth:`send`).
        """
        if user is None:
            raise NotAuthenticated("log in to chat")
        streamer_id = await self.resolve(room)
        _check_text(text)
        dedupe_key = f"{user.id}:{nonce}" if nonce is not None else None
        counted: tuple[str, str] | None = None
        # A retry of a nonce is acknowledged with the original message and costs nothing.
        if not (dedupe_key and self._nonces.seen(dedupe_key)):
            rules = self.rules.cached(streamer_id) or await self.rules.get(streamer_id)
            # The broadcaster and their moderators: exempt from modes, a higher limit.
            staff = user.id == streamer_id or user.id in rules.moderators
            _check_ban(rules, user.id)
            if not staff and rules.blocked_terms and blocked_term(text, rules.blocked_terms):
                raise BlockedTerm("your message holds a term this room does not allow")
            limits = self._limits
            allowance = Allowance(
                limit=(limits.streamer_messages if staff else limits.messages)
                if limits.enabled
                else None,
                window=limits.window,
                slow=0 if staff else rules.slow_seconds,
                unique=not staff and rules.unique_chat,
            )
            if not allowance.free:
                try:
                    await self._senders.admit(streamer_id, user.id, text, allowance)
                except (RateLimited, Duplicate):
                    # Published through another process (a client that reconnected there)?
                    if dedupe_key is None or not await self._stored(room, dedupe_key):
                        raise
                else:
                    counted = (streamer_id, user.id)
        if dedupe_key is not None:
            self._nonces.add(dedupe_key)
        message_id = uuid.uuid4().hex
        body = encode(ChatMessage(message_id, user, text, int(time.time() * 1000)))
        return Outgoing(room, message_id, body, dedupe_key, counted)

    async def _stored(self, room: str, dedupe_key: str) -> bool:
        # Published through another process (a client that reconnected elsewhere).
        return await self._pubsub.find(channel_of(room), dedupe_key) is not None

    async def send(self, outgoing: Outgoing) -> Posted:
        """Store a prepared message, then publish it.

        The store takes the message before this coroutine first waits, so sends
        started in some order are stored (and numbered) in that order.
        """
        started = time.perf_counter()
        try:
            stored = await self._pubsub.publish(
                channel_of(outgoing.room), outgoing.body, dedupe_key=outgoing.dedupe_key
            )
        except BaseException:
            # Not stored: it does not count toward the sender's limit.
            if outgoing.counted is not None:
                self._senders.refund(*outgoing.counted)
            raise
        message_id = outgoing.message_id
        if stored.payload != outgoing.body:
            # The nonce was seen before: acknowledge the original message again, for free.
            # (A retry of a message deleted since has no id left to give.)
            message_id = _chat_decoder.decode(stored.payload).message_id if stored.payload else ""
            if outgoing.counted is not None:
                self._senders.refund(*outgoing.counted)
        else:
            self.published += 1
        if self._on_sent is not None:
            self._on_sent(time.perf_counter() - started)
        return Posted(outgoing.room, stored.seq, message_id)

    async def announce(self, room: str, kind: str, data: dict[str, object]) -> None:
        """Send an ``event`` to everyone in ``room`` now (not stored, not replayed)."""
        await self.resolve(room)
        await self.events.announce(room, kind, data)

    async def broadcast(self, kind: str, data: dict[str, object]) -> None:
        """Send an ``event`` to every room, on every server process (not stored)."""
        await self.events.broadcast(kind, data)

    async def listen_broadcasts(self) -> None:
        """Hand every broadcast event to this process's rooms, until cancelled."""
        await self._pubsub.listen(BROADCAST_CHANNEL, self._broadcast_here)

    def _broadcast_here(self, message: Message) -> None:
        try:
            event = _broadcast_decoder.decode(message.payload)
        except msgspec.DecodeError as exc:
            log.warning("dropped a malformed broadcast: %s", exc)
            return
        for room in self._feeds.rooms():
            if (feed := self._feeds.get(room)) is not None:
                feed.inject(encode(EventFrame(room, event.kind, event.data)))

    # -- moderation ------------------------------------------------------------------

    async def author_of(self, room: str, seq: int) -> str | None:
        """The user ID of message ``seq``; None when it was deleted. :class:`UnknownMessage`
        when the room has no such message (never sent, or pruned)."""
        await self.resolve(room)
        found = await self._pubsub.read(channel_of(room), after=seq - 1, limit=1)
        if not found or found[0].seq != seq:
            raise UnknownMessage(f"no message {seq} in room {room!r}")
        if found[0].redacted:
            return None
        return _chat_decoder.decode(found[0].payload).user.id

    async def messages_of(self, room: str, user_id: str, *, scan: int = _BAN_SCAN) -> list[int]:
        """The seqs of ``user_id``'s messages among the room's newest ``scan``: what a ban or
        a timeout takes out of the chat, as on Twitch."""
        channel = channel_of(room)
        found: list[int] = []
        before: int | None = None
        seen = 0
        while seen < scan:
            page = await self._pubsub.history(channel, before=before, limit=MAX_HISTORY)
            if not page:
                break
            seen += len(page)
            for message in page:
                if (
                    not message.redacted
                    and _chat_decoder.decode(message.payload).user.id == user_id
                ):
                    found.append(message.seq)
            before = page[0].seq
        return sorted(found)

    async def redact(
        self, room: str, seqs: list[int] | None = None, *, through: int | None = None
    ) -> list[int]:
        """Delete messages from the room's history, leaving tombstones (gapless seqs)."""
        return await self._pubsub.redact(channel_of(room), seqs or (), through=through)

    async def last_seq(self, room: str) -> int:
        return (await self._pubsub.last(channel_of(room)))[1]

    # -- the streamer directory -----------------------------------------------------

    def watch(self, member: Member) -> None:
        """Make ``member`` receive every change in the streamer directory."""
        self._watchers.add(member)

    def unwatch(self, member: Member) -> None:
        self._watchers.discard(member)

    @property
    def watchers(self) -> int:
        """This process's members watching the streamer directory."""
        return len(self._watchers)

    async def listen_directory(self) -> None:
        """Hand every directory change to this process's watchers, until cancelled."""
        await self._pubsub.listen(DIRECTORY_CHANNEL, self._directory_here)

    def _directory_here(self, message: Message) -> None:
        # Already a ``streamer`` frame: passed on as it came, never decoded here.
        for member in list(self._watchers):
            member.deliver(message.payload)

    # -- reading ---------------------------------------------------------------------

    async def history(self, room: str, *, before: int | None, limit: int) -> list[bytes]:
        """Up to ``limit`` (at most 100) message frames before ``before``, oldest first."""
        await self.resolve(room)
        messages = await self._pubsub.history(
            channel_of(room), before=before, limit=min(limit, MAX_HISTORY)
        )
        return [_frame(room, m) for m in messages]

    async def read(self, room: str, *, after: int, limit: int) -> list[bytes]:
        """Up to ``limit`` (at most 100) message frames after ``after``, oldest first."""
        await self.resolve(room)
        messages = await self._pubsub.read(
            channel_of(room), after=after, limit=min(limit, MAX_HISTORY)
        )
        return [_frame(room, m) for m in messages]

    async def who(self, room: str) -> list[UserRef]:
        await self.resolve(room)
        return await self._presence.users(room)

    # -- membership ------------------------------------------------------------------

    async def subscribe(
        self,
        member: Member,
        room: str,
        user: UserRef | None,
        *,
        since: int | None = None,
        epoch: str | None = None,
        request_id: int | str | None = None,
    ) -> None:
        """Make ``member`` receive ``room``: the ``subscribed`` reply, any replay, then live.

        Live frames reach the member from the moment it is added; with ``since``
        they are parked until the replay from the store has caught up.
        """
        streamer_id = await self.resolve(room)
        rules = self.rules.cached(streamer_id) or await self.rules.get(streamer_id)
        channel = channel_of(room)
        # Parked from the start: after `subscribed` with seq N the member sees
        # exactly N+1, N+2, ... (or the replay first), never a frame before the reply.
        feed = await self._feeds.add(room, member, parked=True)
        pages: AsyncGenerator[list[Message]] | None = None
        try:
            # What this process has fanned out of the room so far; anything newer
            # reaches the member through the feed, parked until the reply is out.
            current_epoch, last = feed.position
            # A position from another epoch, or beyond the end, cannot be continued;
            # "since 0" (from the very start) can, in any epoch.
            start = last if since is None else since
            valid = (
                since is not None
                and start <= last
                and (start == 0 or epoch in (None, current_epoch))
            )
            replay: list[Message] = []
            if valid and start < last:
                pages = self._pubsub.replay(channel, after=start, until=last)
                replay = await anext(pages, [])
            recovered = valid and (start == last or (bool(replay) and replay[0].seq == start + 1))
            # History was pruned past `since`: say where what is kept begins.
            oldest = replay[0].seq if valid and not recovered and replay else None
            member.deliver(
                encode(
                    Subscribed(
                        id=request_id,
                        room=room,
                        seq=last,
                        epoch=current_epoch,
                        recovered=recovered,
                        oldest=oldest,
                        room_state=rules.modes(),
                    )
                )
            )
            delivered = start if valid else last
            # The one gap the reply announced; any other was pruned while replaying.
            announced = start if oldest is not None else None
            while replay:
                for message in replay:
                    if message.seq != delivered + 1 and delivered != announced:
                        member.deliver(_trimmed(request_id, delivered, message.seq))
                    member.deliver(_frame(room, message))
                    delivered = message.seq
                if delivered >= last:
                    break
                # Let the connection write what it has before reading the next page.
                await member.drained()
                replay = await anext(pages, []) if pages is not None else []
            if valid and delivered < last:
                # Everything up to `last` went while replaying.
                member.deliver(_trimmed(request_id, delivered, last + 1))
                delivered = last
            feed.go_live(member, delivered)
        except BaseException:
            await self._feeds.discard(room, member)
            raise
        finally:
            if pages is not None:
                await pages.aclose()
        if user is not None and self._presence.add(room, user) and self._announces(room, 0):
            self._notify(channel, Join(room, user))

    async def resubscribe(
        self,
        member: Member,
        room: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        request_id: int | str | None = None,
    ) -> None:
        """Subscribe ``member`` to ``room`` again (e.g. to resume with ``since``); its
        user stays present throughout, so nobody sees it leave and join."""
        await self._feeds.discard(room, member)
        await self.subscribe(member, room, None, since=since, epoch=epoch, request_id=request_id)

    async def unsubscribe(self, member: Member, room: str, user: UserRef | None) -> None:
        await self._feeds.discard(room, member)
        if user is not None and self._presence.remove(room, user) and self._announces(room, 1):
            self._notify(channel_of(room), Leave(room, user))

    def _announces(self, room: str, leaving: int) -> bool:
        # Every join in a crowded room would be a message to everyone in it: like
        # Twitch, big rooms announce no joins and leaves; clients ask for presence.
        present = self._presence.local_count(room) + leaving
        return present <= self._limits.announce_presence_at_most

    def _notify(self, channel: str, change: Join | Leave) -> None:
        self._notices.append((channel, change))
        self._notices_waiting.set()

    async def announce_presence(self) -> None:
        """Announce joins and leaves, in order, once presence has stored them, until
        cancelled: whoever hears of a join and asks who is here, on any process, sees
        the user. One presence write covers every notice queued meanwhile."""
        while True:
            await self._notices_waiting.wait()
            self._notices_waiting.clear()
            notices = list(self._notices)
            self._notices.clear()
            try:
                async with asyncio.timeout(_PRESENCE_WRITE_WAIT):
                    await self._presence.persisted()
            except TimeoutError:
                # Notices are a courtesy; late is worse than slightly ahead of the table.
                log.warning(
                    "presence not stored within %g s; announcing %d joins and leaves anyway",
                    _PRESENCE_WRITE_WAIT,
                    len(notices),
                )
            for channel, change in notices:
                try:
                    await self._announce(channel, change)
                except Exception:
                    log.exception("announcing %s on %s failed", type(change).__name__, channel)

    async def _announce(self, channel: str, change: Join | Leave) -> None:
        # Join and leave are courtesy notices (at most once); a broker hiccup
        # must not fail the subscription that caused them.
        try:
            await self._pubsub.publish(channel, encode(change), store=False)
        except PubSubError as exc:
            log.warning("could not announce %s on %s: %s", type(change).__name__, channel, exc)

    # -- counts, for the metrics and tests -------------------------------------------

    @property
    def subscriptions(self) -> int:
        """Room subscriptions of this process's members, every room together."""
        return self._feeds.members

    @property
    def open_rooms(self) -> int:
        """Rooms this process has a feed of."""
        return len(self._feeds.rooms())

    @property
    def delivered(self) -> int:
        """Room frames handed to this process's members so far."""
        return self._feeds.delivered

    def members_of(self, room: str) -> int:
        """This process's members subscribed to ``room``."""
        feed = self._feeds.get(room)
        return 0 if feed is None else len(feed)

    async def close(self) -> None:
        await self._feeds.close()
        await self._lookup.close()
        await self.rules.close()


def _check_ban(rules: RoomRules, user_id: str) -> None:
    if user_id not in rules.bans:
        return
    until = rules.bans[user_id]
    if until is None:
        raise Banned("you are banned from this room")
    wait = (until - datetime.now(UTC)).total_seconds()
    if wait > 0:
        raise TimedOut(
            f"you are timed out in this room for {wait:.0f} s more",
            details={"retry_after": round(wait, 3)},
        )


def _trimmed(request_id: int | str | None, delivered: int, next_seq: int) -> bytes:
    return error_frame(
        request_id,
        HistoryTrimmed(
            f"messages {delivered + 1} to {next_seq - 1} were pruned during the replay",
            details={"from": delivered + 1, "to": next_seq - 1},
        ),
    )


def _frame(room: str, message: Message) -> bytes:
    return message_frame(room, message.seq, message.payload)
