"""The ``file-push`` service (lecture 004) on real loopback sockets.

Send the file, half-close, read the reply: byte-identical files of the edge
sizes under every model, the client's "Thank you" read and logged (capped),
and a file that cannot be sent gives the client an error, not an empty file.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from inetkit.clients.files import TransferError
from inetkit.clients.push import push_get
from inetkit.services.file_push import sample_path
from inetkit.testing.logs import LogLines, captured_log
from inetkit.testing.net import connect, recv_all
from inetkit.testing.running import running_service

MODELS = ["async", "iterative", "thread", "fork"]


@pytest.fixture
def push_log() -> Iterator[LogLines]:
    with captured_log("inetkit.file-push") as lines:
        yield lines


@pytest.mark.parametrize("model", MODELS)
def test_push_is_byte_identical(model: str, tmp_path: Path, push_log: LogLines) -> None:
    src = tmp_path / "src"
    out = tmp_path / "out"
    src.write_bytes(b"")
    with running_service("file-push", model=model, options={"path": str(src)}) as service:
        for size in (0, 1, 65536, 1 << 20):
            # the service opens the file per connection, so each size is a new file
            data = random.Random(size).randbytes(size)
            src.write_bytes(data)
            assert push_get(*service.address, str(out)) == size
            assert out.read_bytes() == data and not Path(str(out) + ".part").exists()
    # the service logs after reading the reply, which may be after push_get
    # returned; the service has stopped (and logged) by now
    if model != "fork":  # a forked child logs in its own process
        for size in (0, 1, 65536, 1 << 20):
            assert any(f"sent {size} bytes" in m and "reply 'Thank you'" in m for m in push_log.lines)


def test_half_close_then_reply_on_a_raw_socket(tmp_path: Path, push_log: LogLines) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"abc" * 1000)
    with running_service("file-push", options={"path": str(src), "reply_max": 16}) as service:
        with connect(service.address) as sock:
            assert recv_all(sock) == b"abc" * 1000  # EOF: the server half-closed
            sock.sendall(b"x" * 100)  # longer than reply_max: read up to the cap only
            try:
                # the server closes after 16 bytes; with input left unread the
                # kernel may answer with RST instead of FIN: either ends it
                assert sock.recv(10) == b""
            except ConnectionResetError:
                pass
    assert any("reply 'xxxxxxxxxxxxxxxx'" in m for m in push_log.lines), push_log.lines


def test_default_file_ships_with_the_package(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_service("file-push") as service:
        push_get(*service.address, str(out))
    assert out.read_bytes() == Path(sample_path()).read_bytes() and b"file-push" in out.read_bytes()


@pytest.mark.parametrize("model", ["async", "thread"])
def test_unreadable_file_is_an_error_not_an_empty_file(model: str, tmp_path: Path, push_log: LogLines) -> None:
    out = tmp_path / "out"
    src = tmp_path / "goes-away"
    src.write_bytes(b"here at start")
    with running_service("file-push", model=model, options={"path": str(src)}) as service:
        src.unlink()
        with pytest.raises(TransferError):
            push_get(*service.address, str(out))
        with pytest.raises(TransferError):  # and the daemon still answers
            push_get(*service.address, str(out))
    assert not out.exists() and not Path(str(out) + ".part").exists()
    assert any("cannot open" in m for m in push_log.lines)


def test_a_fifo_as_the_file_neither_blocks_nor_sends(tmp_path: Path, push_log: LogLines) -> None:
    fifo = tmp_path / "fifo"
    fifo.write_bytes(b"a regular file at start")
    with running_service("file-push", options={"path": str(fifo)}) as service:
        fifo.unlink()
        os.mkfifo(fifo)  # swapped for a FIFO while serving
        for _ in range(2):  # the event loop is not stuck in open(2): the second client is served too
            with pytest.raises(TransferError):
                push_get(*service.address, str(tmp_path / "out"), timeout=5)
    assert any("not a regular file" in m for m in push_log.lines)


def test_a_path_that_cannot_work_is_a_config_error(tmp_path: Path) -> None:
    from inetkit.errors import ConfigError
    from inetkit.services.file_push import FilePushService

    with pytest.raises(ConfigError, match="No such file"):
        FilePushService({"path": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="not a regular file"):
        FilePushService({"path": str(tmp_path)})
