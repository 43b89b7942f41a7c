"""``inetkit chat`` as a subprocess: piped room client, and one-to-one --listen/--direct."""

from __future__ import annotations

import re
import socket

import pytest

from inetkit.config.schema import Limits
from inetkit.testing.running import running_service
from tests.chat_support import Driven

TIMEOUT = 10.0


def _line_reader(sock: socket.socket):  # type: ignore[no-untyped-def]
    buf = bytearray()

    def until(needle: bytes) -> bytes:
        while needle not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError(bytes(buf))
            buf.extend(chunk)
        return bytes(buf)

    return until


def _listening_port(proc: Driven) -> int:
    err = proc.expect(b"waiting for one peer", stderr=True)
    m = re.search(rb"listening on \S+ (\d+);", err)
    assert m, err
    return int(m.group(1))


def test_piped_room_client_sends_receives_and_quits() -> None:
    with running_service("chat", options={"rate": 0}) as svc:
        host, port = svc.address
        with socket.create_connection(svc.address, timeout=TIMEOUT) as watcher:
            until = _line_reader(watcher)
            watcher.sendall(b"watcher\n/join games\n")
            until(b"now in #games")
            proc = Driven.inetkit("chat", host, str(port), "--nick", "carol", "--room", "games")
            try:
                proc.expect(b"* welcome carol")
                proc.expect(b"* now in #games (2): watcher, carol")
                until(b"* carol joined #games")
                proc.send("hello from a pipe, 한글\n".encode())
                until("<carol> hello from a pipe, 한글\n".encode())
                proc.expect("<carol> hello from a pipe, 한글".encode())  # the server's echo
                watcher.sendall(b"hi \x1b[31mcarol\x1b[0m\n")
                proc.expect(b"<watcher> hi carol\n")  # incoming lines print while stdin stays open
                proc.send(b"/quit\n")
                assert proc.wait() == 0
                assert b"* bye (quit)" in proc.expect(b"* bye")
                assert b"\x1b" not in bytes(proc.out)
                until(b"* carol left #games (quit)")
            finally:
                proc.stop()


def test_piped_client_first_line_is_the_nickname_and_stdin_eof_ends_it() -> None:
    with running_service("chat") as svc:
        host, port = svc.address
        with socket.create_connection(svc.address, timeout=TIMEOUT) as watcher:
            until = _line_reader(watcher)
            watcher.sendall(b"watcher\n")
            until(b"welcome")
            proc = Driven.inetkit("chat", host, str(port))
            try:
                proc.send(b"dora\none message\n")
                proc.close_stdin()  # half-close: the server sees EOF, says nothing more, closes
                assert proc.wait() == 0
                assert proc.out.splitlines()[:2] == [
                    b"* welcome dora: you are in #lobby with 1 other; /help lists commands",
                    b"<dora> one message",
                ]
                text = until(b"dora left")
                assert b"<dora> one message\n* dora left #lobby (disconnected)" in text
            finally:
                proc.stop()


@pytest.mark.parametrize("ender", ["direct", "listen"])
def test_listen_and_direct_full_duplex_exit_from_either_side(ender: str) -> None:
    listener = Driven.inetkit("chat", "--listen", "0")
    dialer = None
    try:
        port = _listening_port(listener)
        dialer = Driven.inetkit("chat", "127.0.0.1", str(port), "--direct")
        listener.expect(b"connected with 127.0.0.1:", stderr=True)
        # no turns: one side sends twice in a row, then the other answers
        dialer.send(b"one\ntwo\n")
        listener.expect(b"one\ntwo\n")
        listener.send(b"three\n")
        dialer.expect(b"three\n")
        listener.send(b"four\n")
        dialer.send(b"five\n")
        dialer.expect(b"four\n")
        listener.expect(b"five\n")
        first, second = (dialer, listener) if ender == "direct" else (listener, dialer)
        first.send(b"exit\n")
        assert first.wait() == 0
        assert second.wait() == 0
        assert b"chat ended: you sent exit" in first.expect(b"chat ended", stderr=True)
        assert b"chat ended: peer sent exit" in second.expect(b"chat ended", stderr=True)
        assert b"exit" not in bytes(second.out)
    finally:
        listener.stop()
        if dialer is not None:
            dialer.stop()


def test_listen_strips_escape_sequences_from_its_peer() -> None:
    listener = Driven.inetkit("chat", "--listen", "0")
    try:
        port = _listening_port(listener)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as peer:
            listener.expect(b"connected with", stderr=True)
            peer.sendall(b"\x1b]0;title\x07\x1b[2Jclean\r\nexit\n")
            assert listener.wait() == 0
        assert bytes(listener.out) == b"clean\n"
    finally:
        listener.stop()


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        proc = Driven.inetkit("chat", "127.0.0.1", str(port))
        try:
            assert proc.wait() == 69
            assert b"inetkit: chat: cannot connect to 127.0.0.1 port" in bytes(proc.err)
            assert b"Traceback" not in bytes(proc.err)
        finally:
            proc.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0", "127.0.0.1"], b"--listen takes no HOST PORT"),
        (["127.0.0.1"], b"give HOST PORT"),
        (["127.0.0.1", "1", "--direct", "--nick", "x"], b"--nick and --room are for the chat service"),
    ],
)
def test_usage_errors(args: list[str], message: bytes) -> None:
    proc = Driven.inetkit("chat", *args)
    try:
        assert proc.wait() == 2
        assert message in bytes(proc.err)
    finally:
        proc.stop()


def test_bad_port_is_refused_by_argparse() -> None:
    proc = Driven.inetkit("chat", "127.0.0.1", "99999")
    try:
        assert proc.wait() == 2
        assert b"out of range" in bytes(proc.err)
    finally:
        proc.stop()


def test_terminal_mode_keeps_the_input_line_while_lines_arrive() -> None:
    """On a terminal (a pty here) the prompt_toolkit input line survives
    incoming messages: they print above it and it is redrawn, unbroken."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    def read_until(fd: int, needle: bytes, timeout: float = TIMEOUT) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while needle not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen; got {out!r}"
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the pty
                    break
                out += chunk
        return out

    with running_service("chat", limits=Limits(idle_timeout=60.0)) as svc:
        host, port = svc.address
        with socket.create_connection(svc.address, timeout=TIMEOUT) as watcher:
            until = _line_reader(watcher)
            watcher.sendall(b"watcher\n")
            until(b"welcome")
            controller, terminal = pty.openpty()
            proc = subprocess.Popen(
                [sys.executable, "-m", "inetkit.cli.main", "chat", host, str(port), "--nick", "zed"],
                stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
                env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"},
            )
            os.close(terminal)
            try:
                read_until(controller, b"\x1b[0m>")  # the prompt is drawn
                os.write(controller, b"half-typed")
                read_until(controller, b"half-typed")
                watcher.sendall(b"message while typing\n")
                screen = read_until(controller, b"<watcher> message while typing")
                after = screen.split(b"<watcher> message while typing", 1)[1]
                if b"half-typed" not in after:  # the input line is redrawn below the message
                    read_until(controller, b"half-typed")
                os.write(controller, b" line\r")
                until(b"<zed> half-typed line\n")  # what was typed went out whole
                os.write(controller, b"/quit\r")
                read_until(controller, b"* bye (quit)")
                assert proc.wait(TIMEOUT) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(TIMEOUT)
                os.close(controller)
