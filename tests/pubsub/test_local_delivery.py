"""Messages stored by this process reach its subscribers at once, in seq order."""

from __future__ import annotations

from streamchat.pubsub import Message
from streamchat.pubsub._channel import ChannelState
from streamchat.pubsub._subscription import Subscription


async def _no_fetch(after: int, limit: int) -> list[Message]:
    raise AssertionError("nothing to replay")


def _state() -> tuple[ChannelState, Subscription]:
    state = ChannelState("room:x")
    state.epoch, state.last_seq, state.ready = "e1", 1, True
    sub = Subscription(
        "room:x",
        maxsize=100,
        epoch="e1",
        last_seq=1,
        recovered=False,
        replay=[],
        catch_up_until=1,
        fetch=_no_fetch,
    )
    state.subscribers.add(sub)
    return state, sub


def _message(seq: int, epoch: str = "e1") -> Message:
    return Message("room:x", seq, b"m%d" % seq, 0.0, epoch)


def _queued(sub: Subscription) -> list[int]:
    seqs = [message.seq for message in sub._buffer]
    sub._buffer.clear()
    return seqs


def test_a_message_stored_after_an_undelivered_one_waits_for_it() -> None:
    state, sub = _state()
    # Two publishers raced: seq 3's publisher resumed before seq 2's.
    state.deliver_local(_message(3), limit=10)
    state.deliver_local(_message(4), limit=10)
    assert _queued(sub) == []
    state.deliver_local(_message(2), limit=10)
    assert _queued(sub) == [2, 3, 4]
    assert state.last_seq == 4
    assert state.early == {}


def test_waiting_messages_also_follow_a_predecessor_from_the_broker() -> None:
    state, sub = _state()
    state.deliver_local(_message(3), limit=10)
    assert state.deliver(_message(2))  # the broker (or a gap fill) brought seq 2
    assert _queued(sub) == [2, 3]


def test_the_broker_echo_of_a_delivered_message_is_ignored_and_stale_ones_dropped() -> None:
    state, sub = _state()
    state.deliver_local(_message(2), limit=10)
    assert not state.deliver(_message(2))
    state.deliver_local(_message(5), limit=10)
    # A gap fill delivered 3..5 from the store before 4 came locally.
    for seq in (3, 4, 5):
        state.deliver(_message(seq))
    assert _queued(sub) == [2, 3, 4, 5]
    assert state.early == {}


def test_waiting_is_bounded_and_other_epochs_never_wait() -> None:
    state, sub = _state()
    for seq in range(3, 10):
        state.deliver_local(_message(seq), limit=3)
    state.deliver_local(_message(20, epoch="e2"), limit=3)
    assert sorted(state.early) == [3, 4, 5]
    state.deliver_local(_message(2), limit=3)
    # 6.. were not kept: the store fills them in on the next gap or sweep.
    assert _queued(sub) == [2, 3, 4, 5]
