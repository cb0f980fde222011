"""The outbox: replies coalesced into frames, room batches written straight through,
the bound on what waits, and the connection's lifecycle state.

Each test runs the real protocol on one end of a socket pair (see test_transport.py)
with a websockets sans-I/O client at the other.
"""

from __future__ import annotations

import asyncio

from websockets.frames import Close, Frame, Opcode

from streamchat.rooms.feeds import Batch
from streamchat.ws.outbox import CloseCode, ConnectionState, Outbox
from tests.ws.test_transport import Served, served


def _outbox(conn: Served, *, max_queued_bytes: int = 1 << 20, max_frame: int = 64 << 10) -> Outbox:
    return Outbox(conn.wire, max_queued_bytes=max_queued_bytes, max_frame_bytes=max_frame)


async def _frame(conn: Served) -> Frame:
    frame = await conn.peer.next_event()
    assert isinstance(frame, Frame)
    return frame


async def test_replies_of_one_turn_go_out_as_one_frame() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        outbox.deliver(b'{"n":1}')
        outbox.deliver(b'{"n":2}')
        frame = await _frame(conn)
        assert (frame.opcode, frame.data) == (Opcode.TEXT, b'{"n":1}\n{"n":2}')


async def test_a_frame_is_closed_at_the_size_limit() -> None:
    async with served() as conn:
        outbox = _outbox(conn, max_frame=10)
        for n in range(3):
            outbox.deliver(b"abcdef%d" % n)  # 7 bytes each; two do not fit in 10
        assert [(await _frame(conn)).data for _ in range(3)] == [b"abcdef0", b"abcdef1", b"abcdef2"]


async def test_a_batch_goes_straight_to_an_idle_socket_and_its_frame_is_shared() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        batch = Batch([b'{"seq":1}', b'{"seq":2}'])
        outbox.deliver_batch(batch)
        assert batch.framed is not None  # built once, for every member after this one
        assert (await _frame(conn)).data == b'{"seq":1}\n{"seq":2}'


async def test_a_batch_behind_a_reply_waits_its_turn() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        outbox.deliver(b'{"type":"subscribed"}')
        outbox.deliver_batch(Batch([b'{"seq":1}']))
        assert (await _frame(conn)).data == b'{"type":"subscribed"}\n{"seq":1}'


async def test_a_backed_up_socket_queues_and_flushes_when_it_drains() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        conn.protocol.pause_writing()
        outbox.deliver_batch(Batch([b'{"seq":1}']))
        outbox.deliver(b'{"seq":2}')
        await asyncio.sleep(0)  # a flush turn passes: nothing may be written
        conn.protocol.resume_writing()
        assert (await _frame(conn)).data == b'{"seq":1}\n{"seq":2}'


async def test_too_much_waiting_closes_the_connection_as_too_slow() -> None:
    async with served() as conn:
        outbox = _outbox(conn, max_queued_bytes=4096)
        conn.protocol.pause_writing()
        outbox.deliver(b"x" * 5000)
        assert outbox.state is ConnectionState.CLOSING
        conn.protocol.resume_writing()
        frame = await _frame(conn)
        assert frame.opcode is Opcode.CLOSE  # the queued frame was dropped, not sent
        assert Close.parse(frame.data).code == CloseCode.TOO_SLOW


async def test_lifecycle_open_closing_closed() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        assert outbox.state is ConnectionState.OPEN
        outbox.deliver(b"dropped")  # queued for the next turn, then dropped by the close
        outbox.close(CloseCode.POLICY, "too many errors")
        assert outbox.state is ConnectionState.CLOSING
        outbox.deliver(b"after")
        outbox.deliver_batch(Batch([b"after"]))
        frame = await _frame(conn)
        assert frame.opcode is Opcode.CLOSE
        assert Close.parse(frame.data) == Close(CloseCode.POLICY, "too many errors")
        outbox.close(CloseCode.NORMAL, "again")  # a second close changes nothing
        assert outbox.state is ConnectionState.CLOSING
        outbox.finish()
        assert outbox.state is ConnectionState.CLOSED
        outbox.close(CloseCode.NORMAL, "late")
        assert outbox.state is ConnectionState.CLOSED


async def test_a_client_that_leaves_goes_from_open_to_closed() -> None:
    async with served() as conn:
        outbox = _outbox(conn)
        outbox.finish()
        assert outbox.state is ConnectionState.CLOSED
        outbox.deliver(b"nobody reads this")
        await asyncio.sleep(0)
        assert conn.wire.buffered == 0


async def test_drained_waits_for_the_socket_and_ends_on_close() -> None:
    async with served() as conn:
        outbox = _outbox(conn, max_queued_bytes=4096)
        await asyncio.wait_for(outbox.drained(), 1)  # nothing waits: at once
        conn.protocol.pause_writing()
        outbox.deliver(b"y" * 2000)  # over a quarter of the bound, socket backed up
        waiter = asyncio.create_task(outbox.drained())
        await asyncio.sleep(0)
        assert not waiter.done()
        conn.protocol.resume_writing()
        await asyncio.wait_for(waiter, 5)
        conn.protocol.pause_writing()
        outbox.deliver(b"y" * 2000)
        waiter = asyncio.create_task(outbox.drained())
        await asyncio.sleep(0)
        assert not waiter.done()
        outbox.close(CloseCode.NORMAL, "")
        await asyncio.wait_for(waiter, 5)
