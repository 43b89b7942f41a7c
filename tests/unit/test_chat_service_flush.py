"""The chat service's output path, driven in memory: fake transports record
every write, so the batching (one write per recipient per event-loop pass),
its ordering and the slow-reader cap can be checked exactly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from inetkit.services.base import ConnectionContext, ServiceContext
from inetkit.services.chat import ChatService, _ChatProtocol, _Conn


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.buffered = 0  # what get_write_buffer_size reports

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def close(self) -> None:
        self.transport.close()


class Room:
    """A ChatService with ``n`` named members on fake connections."""

    def __init__(self, nicks: list[str], **options: Any) -> None:
        self.svc = ChatService({"rate": 0, **options})
        self.conns: dict[str, _Conn] = {}
        self.cids: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        ctx = ServiceContext("chat", "async", "tcp", logging.getLogger("test.chat"))
        for cid, nick in enumerate(nicks, 1):
            writer: Any = FakeWriter()
            conn = _Conn(writer, ConnectionContext(ctx, ("127.0.0.1", 40000 + cid), ("127.0.0.1", 8080)),
                         loop.create_future())
            self.svc.conns[cid] = conn
            self.conns[nick] = conn
            self.cids[nick] = cid
            self.svc._apply(self.svc.hub.connect(cid, "127.0.0.1", 0.0))
            self.svc._receive(cid, conn, nick.encode() + b"\n")
        self.svc._flush()
        for conn in self.conns.values():
            conn.transport.writes.clear()  # type: ignore[attr-defined]

    def say(self, nick: str, data: bytes) -> None:
        self.svc._receive(self.cids[nick], self.conns[nick], data)

    def writes(self, nick: str) -> list[bytes]:
        return self.conns[nick].transport.writes  # type: ignore[attr-defined]


async def _one_pass() -> None:
    await asyncio.sleep(0)  # the flush queued with call_soon runs before we resume


def test_lines_from_several_clients_in_one_pass_are_one_write_per_member() -> None:
    async def main() -> None:
        room = Room(["a", "b", "c"])
        before = room.conns["b"].ctx.bytes_out
        room.say("a", b"one\n")
        room.say("b", b"two\nthree\n")
        room.say("c", b"four\n")
        assert room.writes("a") == []  # nothing is written before the pass ends
        await _one_pass()
        for nick in ("a", "b", "c"):
            assert room.writes(nick) == [b"<a> one\n<b> two\n<b> three\n<c> four\n"]
        # the room's bytes are joined once: every member is handed the same object
        assert room.writes("a")[0] is room.writes("b")[0] is room.writes("c")[0]
        assert room.conns["b"].ctx.bytes_out - before == len(room.writes("b")[0])
        room.say("a", b"next\n")
        await _one_pass()
        assert room.writes("c") == [b"<a> one\n<b> two\n<b> three\n<c> four\n", b"<a> next\n"]

    asyncio.run(main())


def test_a_close_order_flushes_first_so_the_goodbye_is_last() -> None:
    async def main() -> None:
        room = Room(["a", "b"])
        room.say("b", b"hi\n")  # queued, not yet written
        room.say("a", b"hello\n/quit later\nignored\n")
        # the close could not wait for the pass: everything went out at once
        assert room.writes("a") == [b"<b> hi\n<a> hello\n* bye (later)\n"]
        assert room.conns["a"].transport.is_closing()
        assert room.conns["a"].ended.result() == "quit"
        assert room.writes("b") == [b"<b> hi\n<a> hello\n* a left #lobby (later)\n"]
        await _one_pass()
        assert len(room.writes("b")) == 1

    asyncio.run(main())


def test_a_member_over_the_queue_cap_is_dropped_after_the_flush() -> None:
    async def main() -> None:
        room = Room(["a", "b", "slow"], queue_bytes=1000)
        room.conns["slow"].transport.buffered = 5000  # type: ignore[attr-defined]
        room.say("a", b"x\n")
        await _one_pass()
        slow = room.conns["slow"]
        assert slow.transport.aborted  # type: ignore[attr-defined]
        assert slow.ended.result() == "too slow: output queue overflow"
        assert room.writes("slow") == [b"<a> x\n"]
        await _one_pass()  # its leave notice, after what the others already got
        assert room.writes("b") == [b"<a> x\n", b"* slow left #lobby (too slow: output queue overflow)\n"]
        room.say("a", b"y\n")
        await _one_pass()
        assert room.writes("slow") == [b"<a> x\n"] and room.writes("b")[-1] == b"<a> y\n"

    asyncio.run(main())


def test_the_idle_notice_goes_after_what_is_queued_and_a_waiter_sees_it_written() -> None:
    async def main() -> None:
        room = Room(["a", "b"])
        room.say("a", b"queued\n")
        assert room.svc._idle_out(room.cids["b"], 5) == "idle for 5 s"
        flushed = room.svc._next_flush()
        assert room.writes("b") == [] and not flushed.done()
        await flushed
        assert room.writes("b") == [b"<a> queued\n* no line from you for 5 s; bye\n"]
        assert room.writes("a") == [b"<a> queued\n"]
        await room.svc._next_flush()  # nothing queued: resolved all the same

    asyncio.run(main())


def test_the_protocol_feeds_the_hub_and_ends_the_session() -> None:
    class StreamSide(asyncio.Protocol):
        def __init__(self) -> None:
            self.lost: list[Exception | None] = []

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.append(exc)

    async def main() -> None:
        room = Room(["a", "b", "c"])
        stream = StreamSide()
        proto = _ChatProtocol(room.svc, room.cids["a"], room.conns["a"], stream)
        proto.data_received(b"via protocol\n")
        assert room.conns["a"].ctx.bytes_in == len(b"a\nvia protocol\n")
        # EOF ends the session but keeps the transport open for its last replies
        assert proto.eof_received() is True
        assert room.conns["a"].ended.result() == "disconnected"
        await _one_pass()
        assert room.writes("a") == [b"<a> via protocol\n"]
        proto.connection_lost(None)
        assert len(stream.lost) == 1  # the stream's reader and writer see the end too

        proto_c = _ChatProtocol(room.svc, room.cids["c"], room.conns["c"], stream)
        proto_c.connection_lost(ConnectionResetError())
        assert room.conns["c"].ended.result() == "connection reset"

        proto_b = _ChatProtocol(room.svc, room.cids["b"], room.conns["b"], stream)

        def broken(*_: Any) -> None:
            raise RuntimeError("hub bug")

        room.svc.hub.receive = broken  # type: ignore[method-assign,assignment]
        proto_b.data_received(b"boom\n")  # must not raise into the event loop
        with pytest.raises(RuntimeError, match="hub bug"):
            room.conns["b"].ended.result()

    asyncio.run(main())


def test_leaves_in_one_pass_reach_each_remaining_member_in_one_write() -> None:
    async def main() -> None:
        room = Room(["a", "b", "c", "d", "e"])
        for nick in ("c", "d", "e"):  # each leave changes the room: three snapshots
            room.svc._apply(room.svc.hub.disconnect(room.cids[nick], "gone"))
        await _one_pass()
        notices = b"* c left #lobby (gone)\n* d left #lobby (gone)\n* e left #lobby (gone)\n"
        assert room.writes("a") == room.writes("b") == [notices]
        assert room.writes("c") == [] and room.writes("d") == [b"* c left #lobby (gone)\n"]

    asyncio.run(main())
