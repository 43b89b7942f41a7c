"""The tftp service on real loopback sockets, with our client and raw packets."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inetkit.clients.tftp import TftpError, get_file, put_file
from inetkit.errors import ConfigError
from inetkit.proto.tftp import packets as P
from inetkit.services.tftp import Refused, TftpService, resolve_path
from inetkit.testing.lossy import Impairment, LossyRelay
from inetkit.testing.running import running_service

SIZES = [0, 1, 511, 512, 513, 1468, 1468 * 3]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture(params=["thread", "loop"])
def server(root: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """Both transfer drivers: a thread per transfer (the default) and the event loop (threads = 0)."""
    threads = 16 if request.param == "thread" else 0
    with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True,
                                                        "threads": threads}) as svc:
        yield svc.address


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class Raw:
    """A hand-driven TFTP peer on its own socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(3.0)
        self.sock.bind(("127.0.0.1", 0))

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(data, addr)

    def recv(self) -> tuple[P.Packet, tuple[str, int]]:
        data, addr = self.sock.recvfrom(70000)
        return P.decode(data), addr


# -- transfers ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_get_and_put_sizes_byte_identical(server: tuple[str, int], root: Path, tmp_path: Path, size: int) -> None:
    data = data_of(size, size)
    (root / "f.bin").write_bytes(data)
    out = tmp_path / "out.bin"
    for kwargs in ({}, {"blksize": 1468}, {"blksize": 1468, "windowsize": 8}):
        result = get_file(*server, "f.bin", str(out), **kwargs)
        assert out.read_bytes() == data and result.bytes == size
        name = f"up-{size}-{kwargs.get('blksize', 512)}-{kwargs.get('windowsize', 1)}.bin"
        put_file(*server, str(out), name, **kwargs)
        assert (root / name).read_bytes() == data


def test_one_block_exactly_ends_with_empty_block(server: tuple[str, int], root: Path, tmp_path: Path) -> None:
    (root / "one").write_bytes(b"z" * 512)
    with Raw() as raw:
        raw.send(P.encode_request(P.RRQ, "one"), server)
        packet, tid = raw.recv()
        assert packet == P.Data(1, b"z" * 512) and tid != server
        raw.send(P.encode_ack(1), tid)
        packet, _ = raw.recv()
        assert packet == P.Data(2, b"")
        raw.send(P.encode_ack(2), tid)


def test_netascii_cr_lf_at_block_edges(server: tuple[str, int], root: Path, tmp_path: Path) -> None:
    text = bytearray(b"t" * 3000)
    for edge in (511, 1022, 1533, 2044):  # wire offsets shift as CRs/LFs expand: cover many
        text[edge - 2:edge + 2] = b"\r\n\n\r"
    text += b"\r\n\rend\r"
    (root / "t.txt").write_bytes(bytes(text))
    out = tmp_path / "t.txt"
    result = get_file(*server, "t.txt", str(out), mode="netascii")
    assert out.read_bytes() == bytes(text)
    assert result.bytes > len(text)  # the wire form is longer (CR LF, CR NUL)
    put_file(*server, str(out), "t-up.txt", mode="netascii", blksize=100)
    assert (root / "t-up.txt").read_bytes() == bytes(text)
    with Raw() as raw:  # tsize of a netascii RRQ is the size on the wire
        raw.send(P.encode_request(P.RRQ, "t.txt", "netascii", {"tsize": "0"}), server)
        packet, tid = raw.recv()
        wire = bytes(text).replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
        assert packet == P.OAck({"tsize": str(len(wire))})
        raw.send(P.encode_error(0, "enough"), tid)


def test_rollover_file_over_32_mib_at_blksize_512(server: tuple[str, int], root: Path, tmp_path: Path) -> None:
    # 65536 blocks of 512 bytes = 32 MiB; the block number wraps to 0 past 65535
    chunk = os.urandom(1 << 20)
    with open(root / "big.bin", "wb") as f:
        f.writelines(chunk[i:] + chunk[:i] for i in range(33))
        f.write(b"tail")
    out = tmp_path / "big.bin"
    result = get_file(*server, "big.bin", str(out), blksize=512, windowsize=64)
    assert result.blksize == 512 and result.bytes == 33 * (1 << 20) + 4
    assert out.read_bytes() == (root / "big.bin").read_bytes()


def test_parallel_transfers(server: tuple[str, int], root: Path, tmp_path: Path) -> None:
    for i in range(6):
        (root / f"p{i}").write_bytes(data_of(50_000 + i, i))
    errors: list[BaseException] = []

    def fetch(i: int) -> None:
        try:
            get_file(*server, f"p{i}", str(tmp_path / f"p{i}"), blksize=1024)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for i in range(6):
        assert (tmp_path / f"p{i}").read_bytes() == (root / f"p{i}").read_bytes()


# -- lossy network -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"blksize": 1468, "windowsize": 16}], ids=["lockstep", "window16"])
def test_lossy_relay_both_directions(server: tuple[str, int], root: Path, tmp_path: Path, kwargs: dict) -> None:
    data = data_of(120_000, 7)
    (root / "l.bin").write_bytes(data)
    impair = Impairment(drop=0.1, duplicate=0.05, reorder=0.05)
    with LossyRelay(server, to_server=impair, to_client=impair, seed=11) as relay:
        get_file(*relay.address, "l.bin", str(tmp_path / "l.bin"), **kwargs)
        assert (tmp_path / "l.bin").read_bytes() == data
        put_file(*relay.address, str(tmp_path / "l.bin"), "l-up.bin", **kwargs)
        assert relay.stats.dropped > 0 and relay.stats.duplicated > 0 and relay.stats.reordered > 0
    assert (root / "l-up.bin").read_bytes() == data


# -- TIDs --------------------------------------------------------------------------------

def test_unknown_tid_gets_error_5_and_transfer_continues(server: tuple[str, int], root: Path) -> None:
    (root / "u").write_bytes(b"a" * 600)
    with Raw() as a, Raw() as b:
        a.send(P.encode_request(P.RRQ, "u"), server)
        packet, tid = a.recv()
        assert packet == P.Data(1, b"a" * 512)
        b.send(P.encode_ack(1), tid)  # an intruder on the transfer's port
        reply, source = b.recv()
        assert isinstance(reply, P.Error) and reply.code == P.ERR_UNKNOWN_TID and source == tid
        a.send(P.encode_ack(1), tid)
        packet, _ = a.recv()
        assert packet == P.Data(2, b"a" * 88)
        a.send(P.encode_ack(2), tid)


def test_retransmitted_request_does_not_start_a_second_transfer(server: tuple[str, int], root: Path) -> None:
    (root / "d").write_bytes(b"d" * 10)
    with Raw() as a:
        request = P.encode_request(P.RRQ, "d")
        a.send(request, server)
        a.send(request, server)
        packet, tid = a.recv()
        assert packet == P.Data(1, b"d" * 10)
        a.send(P.encode_ack(1), tid)
        a.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            a.recv()  # no second DATA 1 from another TID


# -- refusals ----------------------------------------------------------------------------

def expect_error(server: tuple[str, int], request: bytes) -> P.Error:
    with Raw() as raw:
        raw.send(request, server)
        packet, _ = raw.recv()
        assert isinstance(packet, P.Error)
        return packet


def test_read_refusals(server: tuple[str, int], root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("no")
    (root / "out").symlink_to(tmp_path / "secret")
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    cases = {
        "missing": P.ERR_NOT_FOUND,
        "../secret": P.ERR_ACCESS,
        "dir/../../secret": P.ERR_ACCESS,
        str(tmp_path / "secret"): P.ERR_ACCESS,
        "out": P.ERR_ACCESS,
        "dir": P.ERR_ACCESS,
        "fifo": P.ERR_ACCESS,
    }
    for name, code in cases.items():
        error = expect_error(server, P.encode_request(P.RRQ, name))
        assert error.code == code, (name, error)
    assert expect_error(server, P.encode_request(P.RRQ, "x", "mail")).code == P.ERR_ILLEGAL


def test_malformed_requests_answered_never_crash(server: tuple[str, int], root: Path) -> None:
    for junk in (b"", b"\x00", b"\x00\x01noterm", b"\x00\x09", b"\x00\x03\x00\x01data", b"\x00\x01f\x00octet\x00blksize\x00",
                 b"\x00\x01f\x00octet\x00blksize\x0099999999999999999999\x00"):
        with Raw() as raw:
            raw.send(junk, server)
            if junk.startswith(b"\x00\x01f\x00octet\x00blksize\x009"):
                packet, tid = raw.recv()  # absurd blksize: ignored, plain transfer (file missing)
                assert isinstance(packet, P.Error) and packet.code == P.ERR_NOT_FOUND
                continue
            packet, _ = raw.recv()
            assert isinstance(packet, P.Error) and packet.code in (P.ERR_ILLEGAL, P.ERR_OPTIONS)
    (root / "ok").write_bytes(b"fine")
    with Raw() as raw:  # still serving
        raw.send(P.encode_request(P.RRQ, "ok"), server)
        assert raw.recv()[0] == P.Data(1, b"fine")


def test_write_refusals(root: Path, tmp_path: Path) -> None:
    (root / "exists").write_bytes(b"old")
    with running_service("tftp", proto="udp", options={"root": str(root)}) as svc:
        assert expect_error(svc.address, P.encode_request(P.WRQ, "new")).code == P.ERR_ACCESS
    with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True, "max_size": 1000}) as svc:
        assert expect_error(svc.address, P.encode_request(P.WRQ, "exists")).code == P.ERR_EXISTS
        assert expect_error(svc.address, P.encode_request(P.WRQ, "big", "octet", {"tsize": "1001"})).code == P.ERR_DISK_FULL
        assert expect_error(svc.address, P.encode_request(P.WRQ, "nodir/f")).code == P.ERR_NOT_FOUND
        src = tmp_path / "big"
        src.write_bytes(b"b" * 3000)
        with pytest.raises(TftpError) as info:
            put_file(*svc.address, str(src), "big", tsize=False)  # caught while receiving
        assert info.value.code == P.ERR_DISK_FULL and info.value.remote
        assert sorted(p.name for p in root.iterdir()) == ["exists"]  # nothing left behind
    with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True, "allow_overwrite": True}) as svc:
        src.write_bytes(b"new content")
        put_file(*svc.address, str(src), "exists")
        assert (root / "exists").read_bytes() == b"new content"


def test_broken_upload_leaves_nothing(server: tuple[str, int], root: Path) -> None:
    with Raw() as raw:
        raw.send(P.encode_request(P.WRQ, "half"), server)
        packet, tid = raw.recv()
        assert packet == P.Ack(0)
        raw.send(P.encode_data(1, b"h" * 512), tid)
        assert raw.recv()[0] == P.Ack(1)
        assert any(p.name.startswith(".half.") for p in root.iterdir())  # the temporary file
        raw.send(P.encode_error(0, "user cancelled"), tid)
    deadline = time.monotonic() + 5
    while list(root.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(root.iterdir()) == []


def test_max_per_source(root: Path) -> None:
    (root / "f").write_bytes(b"f" * 2000)
    with running_service("tftp", proto="udp", options={"root": str(root), "max_per_source": 1}) as svc:
        with Raw() as a, Raw() as b:
            a.send(P.encode_request(P.RRQ, "f"), svc.address)
            assert isinstance(a.recv()[0], P.Data)
            b.send(P.encode_request(P.RRQ, "f"), svc.address)
            packet, _ = b.recv()
            assert isinstance(packet, P.Error) and "too many" in packet.message


def test_resolve_path_confinement(tmp_path: Path) -> None:
    root = os.path.realpath(tmp_path)
    assert resolve_path(root, "a/b") == os.path.join(root, "a", "b")
    for bad in ("/etc/passwd", "..", "a/../../x", "a\\..\\..\\x", "C:\\x", ""):
        with pytest.raises(Refused):
            resolve_path(root, bad)


def test_default_root_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    service = TftpService({})
    assert service.prepare_root() == os.path.realpath(tmp_path / "xdg" / "inetkit" / "tftp")
    with pytest.raises(ConfigError):
        TftpService({"root": str(tmp_path / "missing")}).prepare_root()
    with pytest.raises(ConfigError):
        TftpService({"max_blksize": 7})


def test_spin_option_lock_step(root: Path, tmp_path: Path) -> None:
    data = data_of(200_000, 3)
    (root / "s.bin").write_bytes(data)
    with running_service("tftp", proto="udp", options={"root": str(root), "spin_us": 100}) as svc:
        get_file(*svc.address, "s.bin", str(tmp_path / "s.bin"))
    assert (tmp_path / "s.bin").read_bytes() == data


def test_ipv6_loopback(root: Path, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    data = data_of(5000, 6)
    (root / "v6").write_bytes(data)
    with running_service("tftp", proto="udp", bind="::1", options={"root": str(root), "allow_create": True}) as svc:
        get_file("::1", svc.port, "v6", str(tmp_path / "v6"), blksize=1024, windowsize=4)
        assert (tmp_path / "v6").read_bytes() == data
        put_file("::1", svc.port, str(tmp_path / "v6"), "v6-up")
    assert (root / "v6-up").read_bytes() == data


# -- the thread driver -------------------------------------------------------------------

def test_thread_driver_retransmits_after_its_timeout(root: Path) -> None:
    """The thread's SO_RCVTIMEO is the session's deadline: an unanswered DATA is sent again."""
    (root / "r").write_bytes(b"r" * 600)
    with running_service("tftp", proto="udp", options={"root": str(root), "timeout": 0.2}) as svc, Raw() as a:
        a.send(P.encode_request(P.RRQ, "r"), svc.address)
        first, tid = a.recv()
        assert first == P.Data(1, b"r" * 512)
        assert svc.call(lambda: svc.runtime.service.threaded) == 1
        started = time.monotonic()
        again, source = a.recv()  # no ACK from us: the same block after the RTO
        assert again == first and source == tid
        assert 0.1 <= time.monotonic() - started < 2.0
        a.send(P.encode_ack(1), tid)
        assert a.recv()[0] == P.Data(2, b"r" * 88)
        a.send(P.encode_ack(2), tid)
        deadline = time.monotonic() + 3
        while svc.call(lambda: svc.runtime.service.threaded) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert svc.call(lambda: (svc.runtime.service.threaded, svc.runtime.service.completed)) == (0, 1)


def test_stop_ends_threaded_transfers_and_leaves_no_upload(root: Path) -> None:
    """Daemon stop (and reload, which retires the service the same way): every
    transfer thread is woken at once, sends ERROR, discards its upload and is joined."""
    (root / "big").write_bytes(b"b" * 5000)
    with Raw() as reader, Raw() as writer:
        with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True}) as svc:
            reader.send(P.encode_request(P.RRQ, "big"), svc.address)
            first, reader_tid = reader.recv()
            assert first == P.Data(1, b"b" * 512)
            reader.send(P.encode_ack(1), reader_tid)
            # then no ACK: the thread waits in recv, inside its steady lock-step loop
            assert reader.recv()[0] == P.Data(2, b"b" * 512)
            writer.send(P.encode_request(P.WRQ, "up.bin"), svc.address)
            ack0, tid = writer.recv()
            assert ack0 == P.Ack(0)
            writer.send(P.encode_data(1, b"u" * 512), tid)
            assert writer.recv()[0] == P.Ack(1)
            assert [p.name for p in root.iterdir() if p.name.endswith(".tftp-part")]
            assert svc.call(lambda: svc.runtime.service.threaded) == 2
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 3.0
        for peer in (reader, writer):
            packet, _ = peer.recv()
            assert isinstance(packet, P.Error) and "shutting down" in packet.message
    assert sorted(p.name for p in root.iterdir()) == ["big"]  # no upload, no temporary file


def test_transfers_beyond_the_thread_limit_run_in_the_event_loop(root: Path, tmp_path: Path) -> None:
    data = data_of(300_000, 9)
    (root / "t.bin").write_bytes(data)
    with running_service("tftp", proto="udp", options={"root": str(root), "threads": 1}) as svc, Raw() as a:
        a.send(P.encode_request(P.RRQ, "t.bin"), svc.address)  # holds the one thread (never ACKed)
        assert a.recv()[0] == P.Data(1, data[:512])
        get_file(*svc.address, "t.bin", str(tmp_path / "t.bin"), blksize=1468, windowsize=8)
        assert svc.call(lambda: svc.runtime.service.threaded) == 1
    assert (tmp_path / "t.bin").read_bytes() == data


def test_thread_driver_retransmits_mid_file_in_steady_lock_step(root: Path) -> None:
    """A client that stops ACKing after a few blocks gets the last DATA again
    (the steady loop hands the timeout back to the timer), then the rest."""
    data = data_of(3000, 4)
    (root / "m").write_bytes(data)
    with running_service("tftp", proto="udp", options={"root": str(root), "timeout": 0.2}) as svc, Raw() as a:
        a.send(P.encode_request(P.RRQ, "m"), svc.address)
        packet, tid = a.recv()
        for block in (1, 2, 3):
            assert packet == P.Data(block, data[(block - 1) * 512:block * 512])
            a.send(P.encode_ack(block), tid)
            packet, _ = a.recv()
        assert packet == P.Data(4, data[1536:2048])
        again, _ = a.recv()  # not ACKed: sent again after the RTO
        assert again == packet
        block = 4
        while True:
            a.send(P.encode_ack(block), tid)
            if block * 512 > len(data):
                break
            packet, _ = a.recv()
            if packet == P.Data(block, data[(block - 1) * 512:block * 512]):
                continue  # a late retransmission of the block we just ACKed
            block += 1
            assert packet == P.Data(block, data[(block - 1) * 512:block * 512])


@pytest.mark.parametrize("blksize", [65464, 40000])
def test_big_blocks_get_and_put_byte_identical(server: tuple[str, int], root: Path, tmp_path: Path, blksize: int) -> None:
    """Big blocks: the client writes each straight to the file (no buffer), the
    receiver passes views of the datagrams; sizes around block edges."""
    for size in (blksize - 1, blksize, 3 * blksize + 17):
        data = data_of(size, size)
        (root / f"b{size}").write_bytes(data)
        get_file(*server, f"b{size}", str(tmp_path / f"b{size}"), blksize=blksize, windowsize=4)
        assert (tmp_path / f"b{size}").read_bytes() == data
        put_file(*server, str(tmp_path / f"b{size}"), f"up{size}", blksize=blksize, windowsize=4)
        assert (root / f"up{size}").read_bytes() == data


@pytest.mark.parametrize("threads", [16, 0], ids=["thread", "event-loop"])
def test_windowed_upload_over_max_size_is_refused_and_leaves_nothing(root: Path, tmp_path: Path, threads: int) -> None:
    """Runs of blocks written with one writev are counted against max_size too,
    also when the writes come after the window's ACK (deferred writes)."""
    src = tmp_path / "big"
    src.write_bytes(data_of(200_000, 8))
    with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True,
                                                        "max_size": 100_000, "threads": threads}) as svc:
        with pytest.raises(TftpError) as info:
            put_file(*svc.address, str(src), "big", tsize=False, blksize=1468, windowsize=16)
        assert info.value.code == P.ERR_DISK_FULL and info.value.remote
    assert list(root.iterdir()) == []
