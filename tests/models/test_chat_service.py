"""The chat service on real loopback sockets: raw nc-style clients and ours."""

from __future__ import annotations

import logging
import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inetkit.clients.chat import DuplexChat, connect
from inetkit.config.schema import Limits
from inetkit.errors import ConfigError
from inetkit.testing.running import running_service, service_config

TIMEOUT = 5.0


class Raw:
    """An nc-style client: bytes out, lines in (every read bounded)."""

    def __init__(self, address: tuple[str, int], nick: str | None = None, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(address)
        self.buf = b""
        self.seen: list[bytes] = []
        if nick is not None:
            self.send(nick.encode() + b"\n")
            assert self.line().startswith(b"* welcome " + nick.encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        self.seen.append(line)
        return line

    def until(self, needle: bytes) -> list[bytes]:
        """Lines up to and including the first one containing ``needle``."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if needle in line:
                return lines

    def drain_to_eof(self, limit: int = 1 << 24) -> bytes:
        data = self.buf
        try:
            while len(data) < limit:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def chat() -> Iterator[tuple[str, int]]:
    with running_service("chat", options={"rate": 0}) as svc:
        yield svc.address


def _ours(address: tuple[str, int], nick: str) -> tuple[DuplexChat, queue.Queue[str]]:
    lines: queue.Queue[str] = queue.Queue()
    client = DuplexChat(connect(*address, timeout=TIMEOUT), lines.put)
    client.start()
    client.send_line(f"/nick {nick}")
    assert lines.get(timeout=TIMEOUT).startswith(f"* welcome {nick}")
    return client, lines


def _get_until(lines: queue.Queue[str], needle: str) -> list[str]:
    got = []
    while True:
        line = lines.get(timeout=TIMEOUT)
        got.append(line)
        if needle in line:
            return got


def test_three_raw_clients_and_ours_get_every_message_in_order(chat: tuple[str, int]) -> None:
    a, b, c = Raw(chat, "alice"), Raw(chat, "bob"), Raw(chat, "carol")
    ours, lines = _ours(chat, "dave")
    seen_ours: list[str] = []
    try:
        for raw in (a, b, c):
            raw.until(b"dave joined #lobby")
        # interleaved senders; every member (sender included: its echo) gets every message in the room's order
        script = [(a, "alice", "a1"), (b, "bob", "b1"), (c, "carol", "c1"), (a, "alice", "a2"),
                  (None, "dave", "d1"), (b, "bob", "b2 \u00e9\u00e8 \ud55c\uae00")]
        expected = []
        for sender, nick, text in script:
            expected.append(f"<{nick}> {text}")
            if sender is None:
                ours.send_line(text)
                seen_ours += _get_until(lines, expected[-1])
            else:
                sender.send(text.encode() + b"\r\n")
                sender.until(expected[-1].encode())  # relayed: the room's order is now fixed
        for raw in (a, b, c):
            if expected[-1].encode() not in raw.seen:
                raw.until(expected[-1].encode())
            assert [l.decode() for l in raw.seen if l.startswith(b"<")] == expected
        if expected[-1] not in seen_ours:
            seen_ours += _get_until(lines, expected[-1])
        assert [l for l in seen_ours if l.startswith("<")] == expected
    finally:
        for raw in (a, b, c):
            raw.close()
        ours.close()


def test_order_seen_by_a_listener_is_the_send_order(chat: tuple[str, int]) -> None:
    listener = Raw(chat, "ear")
    senders = [Raw(chat, f"s{i}") for i in range(3)]
    try:
        listener.until(b"s2 joined")
        expected = []
        for n in range(30):
            s = senders[n % 3]
            s.send(f"m{n}\n".encode())
            expected.append(f"<s{n % 3}> m{n}".encode())
            s.until(expected[-1])  # the sender's echo: the server has relayed it
        got = [l for l in listener.until(b"m29") if l.startswith(b"<")]
        assert got == expected
    finally:
        listener.close()
        for s in senders:
            s.close()


def test_private_message_reaches_only_its_target(chat: tuple[str, int]) -> None:
    a, b, c = Raw(chat, "alice"), Raw(chat, "bob"), Raw(chat, "carol")
    try:
        a.send(b"/msg carol for your eyes only\n")
        assert a.until(b"->") == [b"* bob joined #lobby", b"* carol joined #lobby", b"-> *carol* for your eyes only"]
        assert c.line() == b"*alice* for your eyes only"
        a.send(b"public\n")
        assert b.until(b"public") == [b"* carol joined #lobby", b"<alice> public"]  # no private line in between
        assert c.line() == b"<alice> public"
    finally:
        for raw in (a, b, c):
            raw.close()


def test_nick_collision_is_refused_and_retry_works(chat: tuple[str, int]) -> None:
    a = Raw(chat, "alice")
    b = Raw(chat)
    try:
        b.send(b"Alice\n")
        assert b.line() == b"* nickname 'Alice' is taken; send your nickname"
        b.send(b"alice2\n")
        assert b.line().startswith(b"* welcome alice2")
        b.send(b"/nick alice\n")
        assert b.until(b"taken")[-1] == b"* nickname 'alice' is taken"
    finally:
        a.close()
        b.close()


def test_escape_sequences_never_reach_other_terminals(chat: tuple[str, int]) -> None:
    a, b = Raw(chat, "alice"), Raw(chat, "bob")
    ours, lines = _ours(chat, "carol")
    try:
        a.send(b"\x1b[2J\x1b[H\x1b]0;owned\x07hello \x1b[31mworld\x1b[0m\x07\x08\r\n")
        got = [l for l in b.until(b"hello") if l.startswith(b"<")]
        assert got == [b"<alice> hello world"]
        assert "<alice> hello world" in _get_until(lines, "hello")
    finally:
        a.close()
        b.close()
        ours.close()


def test_overlong_line_is_refused_and_the_connection_goes_on(chat: tuple[str, int]) -> None:
    a, b = Raw(chat, "alice"), Raw(chat, "bob")
    try:
        a.send(b"y" * 100_000 + b"\nstill here\n")
        lines = a.until(b"still here")
        assert b"* line too long (over 4096 bytes); dropped" in lines
        assert [l for l in b.until(b"still here") if l.startswith(b"<")] == [b"<alice> still here"]
    finally:
        a.close()
        b.close()


def test_a_stalled_reader_is_dropped_and_the_room_keeps_flowing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with running_service("chat", options={"rate": 0, "queue_bytes": 16384}) as svc:
        slow = Raw(svc.address, "slow", rcvbuf=4096)
        a, b = Raw(svc.address, "alice"), Raw(svc.address, "bob")
        try:
            payload = "z" * 1000
            dropped_at = None
            received: list[bytes] = []
            deadline = time.monotonic() + 20
            n = 0
            while dropped_at is None and n < 5000 and time.monotonic() < deadline:
                a.send(f"{n} {payload}\n".encode())
                a.until(f"<alice> {n} ".encode())
                for line in b.until(f"<alice> {n} ".encode()):
                    if b"slow left" in line:
                        assert line == b"* slow left #lobby (too slow: output queue overflow)"
                        dropped_at = n
                    elif line.startswith(b"<alice>"):
                        received.append(line)
                n += 1
            assert dropped_at is not None, "the stalled client was never dropped"
            print(f"stalled reader dropped after {dropped_at + 1} messages of ~1 KB")
            # the room went on: more messages, still everyone else in order
            for m in range(n, n + 5):
                a.send(f"{m} after\n".encode())
            tail = b.until(f"<alice> {n + 4} after".encode())
            assert not any(b"slow" in line for line in tail)  # dropped once, nothing after
            got = received + [l for l in tail if l.startswith(b"<alice>")]
            numbers = [int(l.split()[1]) for l in got]
            assert numbers == list(range(n + 5))
            assert any("slow reader" in r.getMessage() for r in caplog.records)
            # what the stalled one gets is a prefix of the room, then the end
            data = slow.drain_to_eof()
            for line in data.split(b"\n")[:-1]:
                assert line.startswith((b"* ", b"<alice>", b"<bob>")) or line == b""
        finally:
            for raw in (slow, a, b):
                raw.close()


def test_flooding_gets_a_notice_then_a_disconnect() -> None:
    with running_service("chat", options={"rate": 2, "burst": 5, "flood_strikes": 3}) as svc:
        flood, watcher = Raw(svc.address, "flood"), Raw(svc.address, "watch")
        try:
            flood.send(b"".join(f"spam {i}\n".encode() for i in range(50)))
            data = flood.drain_to_eof()
            assert b"* slow down: at most 2 lines per second" in data
            assert data.rstrip().endswith(b"* disconnected for flooding")
            seen = watcher.until(b"flood left #lobby (flooding)")
            relayed = [l for l in seen if l.startswith(b"<flood>")]
            assert 1 <= len(relayed) <= 5  # the burst passed, the rest was dropped
        finally:
            flood.close()
            watcher.close()


def test_idle_clients_are_disconnected_with_a_notice() -> None:
    with running_service("chat", limits=Limits(idle_timeout=0.5)) as svc:
        a = Raw(svc.address, "sleepy")
        try:
            start = time.monotonic()
            data = a.drain_to_eof()
            assert b"no line from you for 0.5 s; bye" in data
            assert time.monotonic() - start < 4
        finally:
            a.close()


def test_per_source_connection_limit() -> None:
    with running_service("chat", options={"max_per_source": 2}) as svc:
        a, b = Raw(svc.address, "a"), Raw(svc.address, "b")
        c = Raw(svc.address)
        try:
            assert b"too many connections from 127.0.0.1 (limit 2)" in c.drain_to_eof()
        finally:
            for raw in (a, b, c):
                raw.close()


def test_quit_exit_and_eof_all_leave_with_notices(chat: tuple[str, int]) -> None:
    w, a, b, c = Raw(chat, "w"), Raw(chat, "a"), Raw(chat, "b"), Raw(chat, "c")
    try:
        a.send(b"/quit see you\n")
        assert a.drain_to_eof().endswith(b"\n* bye (see you)\n")
        b.send(b"exit\n")  # the seed's way
        assert b.drain_to_eof().endswith(b"\n* bye (exit)\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert b"bye" not in c.drain_to_eof()
        lines = w.until(b"c left")
        assert [l for l in lines if b" left " in l] == [
            b"* a left #lobby (see you)", b"* b left #lobby (exit)", b"* c left #lobby (disconnected)",
        ]
    finally:
        for raw in (w, a, b, c):
            raw.close()


@pytest.mark.parametrize("model", ["fork", "thread", "iterative"])
def test_only_the_async_model_is_accepted(model: str) -> None:
    from inetkit.config.validate import validate_service

    with pytest.raises(ConfigError, match="shared in-memory state"):
        validate_service(service_config("chat", model=model))


def test_options_are_checked() -> None:
    from inetkit.config.validate import validate_service

    with pytest.raises(ConfigError, match="queue_bytes"):
        validate_service(service_config("chat", options={"queue_bytes": 0}))
    with pytest.raises(ConfigError, match="default_room"):
        validate_service(service_config("chat", options={"default_room": "no spaces"}))


def test_many_clients_in_one_room_all_receive() -> None:
    """A scaled-down form of the bench's 1,000-client room (kept fast here)."""
    n = 200
    with running_service("chat", options={"rate": 0}) as svc:
        clients = []
        try:
            for i in range(n):
                clients.append(Raw(svc.address, f"u{i}"))
            sender = clients[0]
            sender.send(b"/who\n")
            assert sender.until(b"#lobby (").pop().startswith(f"* #lobby ({n}):".encode())
            for k in range(3):
                sender.send(f"fan {k}\n".encode())
            for cl in clients[1:]:
                got = [l for l in cl.until(b"<u0> fan 2") if l.startswith(b"<u0>")]
                assert got == [b"<u0> fan 0", b"<u0> fan 1", b"<u0> fan 2"]
        finally:
            for cl in clients:
                cl.close()


def test_a_line_at_the_cap_is_relayed_whole_to_our_client(chat: tuple[str, int]) -> None:
    a = Raw(chat, "alice")
    ours, lines = _ours(chat, "bob")
    try:
        body = "é" * 2048  # 4096 bytes of UTF-8: exactly the cap
        a.send(body.encode() + b"\n")
        assert _get_until(lines, "<alice> ")[-1] == f"<alice> {body}"
    finally:
        a.close()
        ours.close()


def test_daemon_stop_says_goodbye_and_does_not_wait_out_the_grace(tmp_path: Path) -> None:
    from inetkit.testing.running import running_daemon, stop_process

    config = '[daemon]\ngrace = 20\n[services.chat]\nport = 0\nproto = "tcp"\n'
    with running_daemon(config_text=config, tmp_path=tmp_path) as daemon:
        address = ("127.0.0.1", daemon.port("chat"))
        a, b = Raw(address, "alice"), Raw(address)  # one named, one still unnamed
        try:
            start = time.monotonic()
            assert stop_process(daemon.process) == 0
            assert time.monotonic() - start < 10  # far less than the 20 s grace
            assert a.drain_to_eof().endswith(b"* server shutting down; bye\n")
            assert b.drain_to_eof() == b"* server shutting down; bye\n"
        finally:
            a.close()
            b.close()


def test_half_close_right_after_the_first_lines_still_gets_every_reply(chat: tuple[str, int]) -> None:
    """`printf 'alice\\nhi\\n' | nc -N`: name, message and EOF may all arrive
    in the first read (before the connection leaves the stream reader)."""
    w = Raw(chat, "watcher")
    a = Raw(chat)
    try:
        a.send(b"alice\nhi there\n")
        a.sock.shutdown(socket.SHUT_WR)
        data = a.drain_to_eof()
        assert data.startswith(b"* welcome alice") and data.endswith(b"\n<alice> hi there\n")
        assert [l for l in w.until(b"alice left") if b"alice" in l] == [
            b"* alice joined #lobby", b"<alice> hi there", b"* alice left #lobby (disconnected)",
        ]
    finally:
        w.close()
        a.close()


def test_half_close_later_flushes_the_last_echo_before_closing(chat: tuple[str, int]) -> None:
    w, a = Raw(chat, "watcher"), Raw(chat, "alice")
    try:
        for n in range(3):
            a.send(f"line {n}\n".encode())
            assert a.line() == f"<alice> line {n}".encode()
        a.send(b"last words\n")
        a.sock.shutdown(socket.SHUT_WR)
        assert a.drain_to_eof() == b"<alice> last words\n"
        lines = w.until(b"alice left")
        assert lines[-2:] == [b"<alice> last words", b"* alice left #lobby (disconnected)"]
    finally:
        w.close()
        a.close()


def test_an_unnamed_client_that_says_nothing_times_out_too() -> None:
    with running_service("chat", limits=Limits(idle_timeout=0.5)) as svc:
        a = Raw(svc.address)
        try:
            start = time.monotonic()
            assert a.drain_to_eof() == b"* no line from you for 0.5 s; bye\n"
            assert time.monotonic() - start < 4
        finally:
            a.close()


def test_idle_timer_is_reset_by_every_line() -> None:
    with running_service("chat", limits=Limits(idle_timeout=0.8)) as svc:
        a = Raw(svc.address, "busy")
        try:
            start = time.monotonic()
            for n in range(4):  # 1.2 s of talk, a line every 0.3 s: never idle
                a.send(f"m{n}\n".encode())
                assert a.line() == f"<busy> m{n}".encode()
                time.sleep(0.3)  # pacing the talk, not waiting for readiness
            assert time.monotonic() - start > 0.8
            assert b"no line from you for 0.8 s; bye" in a.drain_to_eof()
        finally:
            a.close()


def test_simultaneous_bursts_from_several_clients_arrive_complete_and_in_order(chat: tuple[str, int]) -> None:
    """Several clients write at once (their lines meet in the server's batched
    flushes): a watcher gets every line, each sender's in its order."""
    watcher = Raw(chat, "watch")
    senders = [Raw(chat, f"s{k}") for k in range(5)]
    count = 200
    try:
        bursts = [b"".join(f"{k}:{i}\n".encode() for i in range(count)) for k in range(len(senders))]
        for raw, burst in zip(senders, bursts):
            raw.send(burst)
        got: dict[str, list[int]] = {f"s{k}": [] for k in range(len(senders))}
        deadline = time.monotonic() + 20
        while sum(map(len, got.values())) < count * len(senders) and time.monotonic() < deadline:
            line = watcher.line()
            if line.startswith(b"<s"):
                nick, _, body = line.decode().partition("> ")
                got[nick[1:]].append(int(body.split(":")[1]))
        assert got == {f"s{k}": list(range(count)) for k in range(len(senders))}
    finally:
        for raw in (watcher, *senders):
            raw.close()
