"""The seed's chat programs (002 assignment 1, restated in ``chat_c/``) against ours.

The seed's server and client strictly alternate turns (one ``read`` per
``fgets``/``send``).  Each exchange below is checked byte for byte on the
seed program's stdout: our side must answer every line with exactly one
write, never require turns itself, and end on ``exit`` from either side.
Also checked with OpenBSD ``nc`` when it is installed.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from inetkit.testing.peers import find_peer
from inetkit.testing.running import running_service
from tests.chat_support import Driven

pytestmark = pytest.mark.interop

SOURCES = Path(__file__).parent / "chat_c"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build the seed's chat programs")
    out = tmp_path_factory.mktemp("chat_c")
    built = {}
    for name in ("chat_server", "chat_client"):
        exe = out / name
        result = subprocess.run(
            [gcc, "-Wall", "-O1", "-o", str(exe), str(SOURCES / f"{name}.c")],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        built[name] = str(exe)
    return built


def _seed_server(seed: dict[str, str]) -> tuple[Driven, int]:
    server = Driven([seed["chat_server"], "0"])
    err = server.expect(b"port ", stderr=True)
    server.expect(b"Waiting for a connection...\n")
    m = re.search(rb"port (\d+)", err)
    assert m, err
    return server, int(m.group(1))


def test_seed_client_against_our_chat_service(seed: dict[str, str]) -> None:
    with running_service("chat") as svc, socket.create_connection(svc.address, timeout=TIMEOUT) as watcher:
        watcher.sendall(b"watcher\n")
        assert watcher.recv(4096).startswith(b"* welcome watcher")
        client = Driven([seed["chat_client"], str(svc.port)])
        try:
            client.expect(b"Connected to server.\nClient: ")
            client.send(b"alice\n")  # the first line is the nickname
            client.expect(b"\nClient: Server: ")
            client.expect(b"\n\nClient: ")
            client.send(b"hello room\n")
            client.expect(b"<alice> hello room\n\nClient: ")
            client.send(b"exit\n")
            assert client.wait() == 0
            assert bytes(client.out) == (
                b"Connected to server.\n"
                b"Client: Server: * welcome alice: you are in #lobby with 1 other; /help lists commands\n\n"
                b"Client: Server: <alice> hello room\n\n"
                b"Client: "
            )
            got = b""
            while b"alice left" not in got:
                chunk = watcher.recv(4096)
                assert chunk, got
                got += chunk
            assert got == b"* alice joined #lobby\n<alice> hello room\n* alice left #lobby (exit)\n"
        finally:
            client.stop()


def test_seed_client_against_our_listen(seed: dict[str, str]) -> None:
    ours = Driven.inetkit("chat", "--listen", "0")
    client = None
    try:
        err = ours.expect(b"waiting for one peer", stderr=True)
        port = re.search(rb"listening on \S+ (\d+);", err).group(1).decode()  # type: ignore[union-attr]
        client = Driven([seed["chat_client"], port])
        client.expect(b"Connected to server.\nClient: ")
        client.send(b"hello\n")
        ours.expect(b"hello\n")
        ours.send(b"hi there\n")
        client.expect(b"Server: hi there\n\nClient: ")
        client.send(b"how are you?\n")
        ours.expect(b"how are you?\n")
        ours.send(b"fine\n")
        client.expect(b"Server: fine\n\nClient: ")
        client.send(b"exit\n")  # the seed ends it: both ends stop
        assert client.wait() == 0
        assert ours.wait() == 0
        assert bytes(client.out) == (
            b"Connected to server.\n"
            b"Client: Server: hi there\n\n"
            b"Client: Server: fine\n\n"
            b"Client: "
        )
        assert bytes(ours.out) == b"hello\nhow are you?\n"
        assert b"chat ended: peer sent exit" in bytes(ours.err)
    finally:
        ours.stop()
        if client is not None:
            client.stop()


@pytest.mark.parametrize("ender", ["ours", "seed"])
def test_our_direct_client_against_the_seed_server(seed: dict[str, str], ender: str) -> None:
    server, port = _seed_server(seed)
    ours = None
    try:
        ours = Driven.inetkit("chat", "127.0.0.1", str(port), "--direct")
        server.expect(b"Connection established with client.\n")
        ours.send(b"hello\n")
        server.expect(b"Client: hello\n\nServer: ")
        server.send(b"hi\n")
        ours.expect(b"hi\n")
        ours.send(b"bye soon\n")
        server.expect(b"Client: bye soon\n\nServer: ")
        if ender == "ours":
            ours.send(b"exit\n")
            assert ours.wait() == 0  # we end at once, we do not wait for a turn
            # the seed's server only reads the socket after its own user's line
            # (strict turns); then it reads our exit and ends too
            server.send(b"too late\n")
            assert server.wait() == 0
        else:
            server.send(b"exit\n")
            assert server.wait() == 0
            assert ours.wait() == 0
            assert b"chat ended: peer sent exit" in bytes(ours.err)
        assert bytes(server.out) == (
            b"Waiting for a connection...\n"
            b"Connection established with client.\n"
            b"Client: hello\n\n"
            b"Server: Client: bye soon\n\n"
            b"Server: "
        )
        assert bytes(ours.out) == b"hi\n"
    finally:
        server.stop()
        if ours is not None:
            ours.stop()


def test_our_direct_client_does_not_need_turns(seed: dict[str, str]) -> None:
    """Two lines in a row from us: the seed server reads what arrived, and the
    exchange goes on (its single read may hold both lines)."""
    server, port = _seed_server(seed)
    ours = Driven.inetkit("chat", "127.0.0.1", str(port), "--direct")
    try:
        server.expect(b"Connection established with client.\n")
        ours.send(b"one\ntwo\n")
        out = server.expect(b"Server: ")
        assert b"Client: one\n" in out
        server.send(b"ok\n")
        ours.expect(b"ok\n")
        together = b"Client: one\ntwo\n" in out
        if not together:  # its next read got our second line: its turn to type again
            server.expect(b"Client: two\n\nServer: ")
        ours.send(b"exit\n")
        assert ours.wait() == 0
        if not together:
            server.send(b"too late\n")  # its turn over, it reads our exit
        assert server.wait() == 0
    finally:
        server.stop()
        ours.stop()


def test_nc_in_our_chat_room() -> None:
    nc = find_peer("nc")
    if nc is None:
        pytest.skip("nc not installed")
    with running_service("chat") as svc, socket.create_connection(svc.address, timeout=TIMEOUT) as watcher:
        watcher.sendall(b"watcher\n")
        assert watcher.recv(4096).startswith(b"* welcome")
        # -N: shut the socket down at stdin EOF (OpenBSD nc); -w bounds it
        result = subprocess.run(
            [nc, "-N", "-w", "5", "127.0.0.1", str(svc.port)],
            input=b"ncuser\r\nhello from nc\r\n/who\r\n", capture_output=True, timeout=TIMEOUT, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == (
            b"* welcome ncuser: you are in #lobby with 1 other; /help lists commands\n"
            b"<ncuser> hello from nc\n"
            b"* #lobby (2): watcher, ncuser\n"
        )
        got = b""
        while b"ncuser left" not in got:
            chunk = watcher.recv(4096)
            assert chunk, got
            got += chunk
        assert b"<ncuser> hello from nc\n" in got


def test_nc_against_our_listen() -> None:
    nc = find_peer("nc")
    if nc is None:
        pytest.skip("nc not installed")
    ours = Driven.inetkit("chat", "--listen", "0")
    try:
        err = ours.expect(b"waiting for one peer", stderr=True)
        port = re.search(rb"listening on \S+ (\d+);", err).group(1).decode()  # type: ignore[union-attr]
        result = subprocess.run(
            [nc, "-N", "-w", "5", "127.0.0.1", port], input=b"from nc\nexit\n", capture_output=True, timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert ours.wait() == 0
        assert bytes(ours.out) == b"from nc\n"
    finally:
        ours.stop()
