"""TFTP interop with real peers: curl, tftp-hpa's tftp, atftp against inetkit's
server; inetkit's client against in.tftpd (tftpd-hpa) and atftpd.

Every transfer must be byte-identical.  Peers that are missing make their
tests skip with the install hint.  Servers that need a fixed port get a free
one (bind port 0, close, start the peer; one retry if it races).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inetkit.clients.tftp import TftpError, get_file, put_file
from inetkit.proto.tftp import netascii
from inetkit.proto.tftp import packets as P
from inetkit.testing.peers import find_peer, install_hint
from inetkit.testing.running import running_service, stop_process

pytestmark = pytest.mark.interop

SIZES = [0, 1, 511, 512, 513, 1468]
BIG = 40 * 1024 * 1024 + 123


def need(program: str) -> str:
    path = find_peer(program)
    if path is None:
        pytest.skip(install_hint(program))
    return path


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def big_file(path: Path) -> bytes:
    chunk = os.urandom(1 << 20)
    data = b"".join(chunk[i:] + chunk[:i] for i in range(BIG >> 20)) + chunk[: BIG & 0xFFFFF]
    path.write_bytes(data)
    path.chmod(0o644)
    return data


def text_with_edges() -> bytes:
    """Unix text whose LFs (CR LF on the wire) fall on and around 512-byte edges."""
    lines = []
    for n in range(1, 60):
        lines.append(b"x" * ((n * 37) % 120) + b"\n")
    text = b"".join(lines)
    return text[:509] + b"\n\n\n" + text[512:1020] + b"\n\n" + text[1022:]


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def root() -> Iterator[Path]:
    """A root the peers' unprivileged users (nobody) can read and write."""
    path = Path(tempfile.mkdtemp(prefix="inetkit-tftp-interop-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def inetkit(root: Path) -> Iterator[tuple[str, int]]:
    options = {"root": str(root), "allow_create": True, "allow_overwrite": True}
    with running_service("tftp", proto="udp", options=options) as svc:
        yield svc.address


def stored(path: Path, data: bytes, timeout: float = 5.0) -> bytes:
    """The file a peer server stored.  atftpd and in.tftpd send the final ACK
    before they close the file, so poll (bounded) until it is complete."""
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_bytes() if path.exists() else b""
        if content == data or time.monotonic() > deadline:
            return content
        time.sleep(0.005)


def put_in(root: Path, name: str, data: bytes) -> None:
    (root / name).write_bytes(data)
    (root / name).chmod(0o644)


# -- peer servers ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    """The server replies to an RRQ (with ERROR or DATA): it is up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for _ in range(25):
            s.sendto(P.encode_request(P.RRQ, "inetkit-readiness-probe"), ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(1024)
            except (TimeoutError, ConnectionRefusedError):
                continue
            return bool(data)
    return False


@contextmanager
def peer_server(kind: str, root: Path) -> Iterator[tuple[str, int]]:
    program = need(kind)
    for attempt in range(2):
        port = free_port()
        if kind == "in.tftpd":
            argv = [program, "-L", "-c", "-a", f"127.0.0.1:{port}", "-s", str(root)]
        else:
            argv = [program, "--daemon", "--no-fork", "--port", str(port), "--bind-address", "127.0.0.1",
                    "--logfile", "/dev/null", str(root)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if _answers(port):
            break
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()
    else:
        pytest.fail(f"{kind} did not start")
    try:
        yield ("127.0.0.1", port)
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


# -- curl against inetkit ----------------------------------------------------------------

@pytest.mark.parametrize("blksize", [None, 1468], ids=["default", "blksize1468"])
@pytest.mark.parametrize("size", SIZES)
def test_curl_get_and_put(inetkit: tuple[str, int], root: Path, tmp_path: Path, size: int, blksize: int | None) -> None:
    curl = need("curl")
    data = data_of(size, size)
    put_in(root, "f.bin", data)
    host, port = inetkit
    extra = ["--tftp-blksize", str(blksize)] if blksize else []
    out = tmp_path / "out"
    r = run([curl, "-sS", *extra, "-o", str(out), f"tftp://{host}:{port}/f.bin"])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data
    r = run([curl, "-sS", *extra, "-T", str(out), f"tftp://{host}:{port}/up.bin"])
    assert r.returncode == 0, r.stderr
    assert (root / "up.bin").read_bytes() == data


def test_curl_netascii_with_tsize(inetkit: tuple[str, int], root: Path, tmp_path: Path) -> None:
    """curl sends tsize by default; netascii + tsize fails against tftpd-hpa 5.2
    and atftpd 0.8 but works here.  curl stores the wire form (CR LF)."""
    curl = need("curl")
    text = text_with_edges()
    put_in(root, "t.txt", text)
    host, port = inetkit
    for extra in ([], ["--tftp-blksize", "100"]):
        out = tmp_path / "t.txt"
        r = run([curl, "-sS", *extra, "-o", str(out), f"tftp://{host}:{port}/t.txt;mode=netascii"])
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == netascii.encode(text)
    src = tmp_path / "src.txt"
    src.write_bytes(text)
    r = run([curl, "-sS", "-T", str(src), f"tftp://{host}:{port}/up.txt;mode=netascii"])
    assert r.returncode == 0, r.stderr
    assert (root / "up.txt").read_bytes() == text  # LF-only text: what was sent is what is stored


@pytest.mark.slow
def test_curl_40_mib_at_blksize_512_rolls_over(inetkit: tuple[str, int], root: Path, tmp_path: Path) -> None:
    """81920 blocks of 512 bytes: the block number wraps to 0 the way curl expects."""
    curl = need("curl")
    data = big_file(root / "big.bin")
    host, port = inetkit
    out = tmp_path / "big.bin"
    r = run([curl, "-sS", "-o", str(out), f"tftp://{host}:{port}/big.bin"], timeout=50)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size == len(data) and out.read_bytes() == data


def test_curl_sees_server_errors(inetkit: tuple[str, int], root: Path, tmp_path: Path) -> None:
    curl = need("curl")
    host, port = inetkit
    r = run([curl, "-sS", "-o", str(tmp_path / "x"), f"tftp://{host}:{port}/missing"])
    assert r.returncode == 68  # CURLE_TFTP_NOTFOUND
    r = run([curl, "-sS", "-o", str(tmp_path / "x"), f"tftp://{host}:{port}/..%2Fetc%2Fpasswd"])
    assert r.returncode != 0


# -- tftp-hpa's client against inetkit ---------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_tftp_hpa_client_get_put(inetkit: tuple[str, int], root: Path, tmp_path: Path, size: int) -> None:
    tftp = need("tftp")
    data = data_of(size, size + 1)
    put_in(root, "f.bin", data)
    host, port = inetkit
    out = tmp_path / "out"
    r = run([tftp, host, str(port), "-m", "binary", "-c", "get", "f.bin", str(out)])
    assert "Error" not in r.stdout + r.stderr
    assert out.read_bytes() == data
    r = run([tftp, host, str(port), "-m", "binary", "-c", "put", str(out), "up.bin"])
    assert "Error" not in r.stdout + r.stderr
    assert (root / "up.bin").read_bytes() == data


def test_tftp_hpa_client_netascii_and_error(inetkit: tuple[str, int], root: Path, tmp_path: Path) -> None:
    tftp = need("tftp")
    text = text_with_edges()
    put_in(root, "t.txt", text)
    host, port = inetkit
    out = tmp_path / "t.txt"
    r = run([tftp, host, str(port), "-m", "ascii", "-c", "get", "t.txt", str(out)])
    assert out.read_bytes() == text, r.stdout + r.stderr  # tftp-hpa decodes netascii
    r = run([tftp, host, str(port), "-m", "ascii", "-c", "put", str(out), "t-up.txt"])
    assert (root / "t-up.txt").read_bytes() == text
    r = run([tftp, host, str(port), "-m", "binary", "-c", "get", "missing", str(tmp_path / "m")])
    assert "Error code 1" in r.stdout + r.stderr


# -- atftp against inetkit ---------------------------------------------------------------

@pytest.mark.parametrize("blksize, windowsize", [(512, 1), (1468, 4), (1468, 16)])
@pytest.mark.parametrize("size", [0, 513, 1468, 100_000])
def test_atftp_client_options(inetkit: tuple[str, int], root: Path, tmp_path: Path, size: int, blksize: int, windowsize: int) -> None:
    atftp = need("atftp")
    data = data_of(size, size + 2)
    put_in(root, "f.bin", data)
    host, port = inetkit
    opts = ["--option", f"blksize {blksize}", "--option", f"windowsize {windowsize}"]
    out = tmp_path / "out"
    r = run([atftp, *opts, "-g", "-r", "f.bin", "-l", str(out), host, str(port)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_bytes() == data
    r = run([atftp, *opts, "-p", "-l", str(out), "-r", "up.bin", host, str(port)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "up.bin").read_bytes() == data


# -- inetkit's client against in.tftpd and atftpd ----------------------------------------

@pytest.mark.parametrize("kind", ["in.tftpd", "atftpd"])
@pytest.mark.parametrize("size", SIZES)
def test_our_client_against_peer_servers(kind: str, root: Path, tmp_path: Path, size: int) -> None:
    data = data_of(size, size + 3)
    put_in(root, "f.bin", data)
    with peer_server(kind, root) as server:
        for i, kwargs in enumerate(({}, {"blksize": 1468}, {"blksize": 1468, "windowsize": 16})):
            out = tmp_path / "out"
            result = get_file(*server, "f.bin", str(out), **kwargs)
            assert out.read_bytes() == data
            if kind == "in.tftpd" and "windowsize" in kwargs:
                assert result.windowsize == 1  # tftpd-hpa 5.2 leaves windowsize out of its OACK
            put_file(*server, str(out), f"up{i}.bin", **kwargs)
            assert stored(root / f"up{i}.bin", data) == data


@pytest.mark.parametrize("kind", ["in.tftpd", "atftpd"])
def test_our_client_netascii_and_errors_against_peer_servers(kind: str, root: Path, tmp_path: Path) -> None:
    text = text_with_edges() + b"bare\rcr\r\n"
    put_in(root, "t.txt", text)
    with peer_server(kind, root) as server:
        out = tmp_path / "t.txt"
        get_file(*server, "t.txt", str(out), mode="netascii", tsize=False)
        assert out.read_bytes() == text
        with pytest.raises(TftpError) as info:
            get_file(*server, "missing", str(tmp_path / "missing"))
        assert info.value.remote and info.value.code == P.ERR_NOT_FOUND
        assert not (tmp_path / "missing").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["in.tftpd", "atftpd"])
def test_our_client_40_mib_against_peer_servers(kind: str, root: Path, tmp_path: Path) -> None:
    data = big_file(root / "big.bin")
    with peer_server(kind, root) as server:
        out = tmp_path / "big.bin"
        get_file(*server, "big.bin", str(out), blksize=1468, windowsize=16)
        assert out.stat().st_size == len(data) and out.read_bytes() == data


@pytest.mark.slow
def test_our_client_and_server_40_mib_both_directions(inetkit: tuple[str, int], root: Path, tmp_path: Path) -> None:
    data = big_file(root / "big.bin")
    out = tmp_path / "big.bin"
    get_file(*inetkit, "big.bin", str(out), blksize=1468, windowsize=16)
    assert out.read_bytes() == data
    put_file(*inetkit, str(out), "big-up.bin", blksize=1468, windowsize=16)
    assert (root / "big-up.bin").read_bytes() == data
