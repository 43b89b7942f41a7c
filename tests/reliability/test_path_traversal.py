"""Path-traversal corpus against TFTP and the ``files`` service: all refused.

Every name of the corpus (``..``, ``%2e%2e``, absolute paths, backslashes,
NUL, overlong names, symlinks pointing out, device files, FIFOs) is sent as a
read and as a write request.  Each must get the protocol's error (a TFTP
ERROR packet, an FX1 ``ERR 4xx`` line) — never data — and afterwards nothing
outside the root was read or written: the secret next to the root is never
seen on the wire, the directory around the root is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from inetkit.testing.running import running_service

SECRET = b"TOP-SECRET-" + os.urandom(8).hex().encode()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """``tmp/outside/secret.txt`` next to ``tmp/root`` whose entries point out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_bytes(b"fine\n")
    (root / "link_out").symlink_to(outside / "secret.txt")
    (root / "rel_link_out").symlink_to("../outside/secret.txt")
    (root / "dirlink").symlink_to(outside)
    (root / "sub" / "up").symlink_to("../../outside")
    (root / "devzero").symlink_to("/dev/zero")
    (root / "loop").symlink_to("loop")
    os.mkfifo(root / "fifo")
    try:
        os.mknod(root / "zero", 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    except (PermissionError, OSError):
        pass  # not root: the symlink to /dev/zero still covers device files
    yield {"root": root, "outside": outside, "base": tmp_path}


def _snapshot(base: Path) -> dict[str, bytes | str]:
    """Everything outside the root: names and contents (files), link targets."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if Path(dirpath).name == "root" and Path(dirpath).parent == base:
            dirnames[:] = []
            continue
        for name in filenames:
            p = Path(dirpath, name)
            seen[str(p)] = p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p) if p.is_symlink() else "?"
    return seen


def corpus(tree: dict[str, Path]) -> list[str]:
    secret = str(tree["outside"] / "secret.txt")
    return [
        "..", "../outside/secret.txt", "../../../../../../etc/passwd", "sub/../../outside/secret.txt",
        "./../outside/secret.txt", "sub/../..", "ok.txt/../../outside/secret.txt",
        "%2e%2e/outside/secret.txt", "%2e%2e%2foutside%2fsecret.txt", "..%2foutside%2fsecret.txt",
        "%252e%252e/outside/secret.txt", "....//....//outside/secret.txt",
        "/etc/passwd", secret, "//etc/passwd", "~/../../etc/passwd", "~root/.bashrc",
        "..\\outside\\secret.txt", "\\etc\\passwd", "sub\\..\\..\\outside\\secret.txt", "C:\\Windows\\win.ini",
        "c:/windows/win.ini",
        "link_out", "rel_link_out", "dirlink/secret.txt", "sub/up/secret.txt", "devzero", "zero", "fifo", "loop",
        "\u2025/outside/secret.txt", "\uff0e\uff0e/outside/secret.txt",
        "A" * 300, "A/" * 200 + "x", "B" * 5000,
        ".", "sub", "sub/", "./",
    ]


def _assert_untouched(tree: dict[str, Path], before: dict[str, bytes | str]) -> None:
    assert _snapshot(tree["base"]) == before
    assert (tree["outside"] / "secret.txt").read_bytes() == SECRET


# -- TFTP (RFC 1350: refusals are ERROR packets) ----------------------------------------------


#: names that are plain file names inside the root when taken literally, as TFTP
#: does (no percent-decoding): a write may be accepted, it lands inside the root
LITERAL_INSIDE = {"%2e%2e%2foutside%2fsecret.txt", "..%2foutside%2fsecret.txt"}


def _tftp_exchange(address: tuple[str, int], packet: bytes, abort: bool = True) -> bytes:
    """Send one request, return the first reply; a transfer the server started
    is aborted at once with an ERROR to its TID (RFC 1350 section 7)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3.0)
        for _ in range(2):  # one retry: UDP on loopback rarely drops, but may
            sock.sendto(packet, address)
            try:
                data, tid = sock.recvfrom(70000)
            except TimeoutError:
                continue
            if abort and data[:2] != b"\x00\x05":
                sock.sendto(b"\x00\x05\x00\x00test over\x00", tid)
            return data
    raise AssertionError(f"no reply to {packet[:60]!r}")


def test_tftp_refuses_the_corpus(tree: dict[str, Path]) -> None:
    from inetkit.proto.tftp import packets as P

    before = _snapshot(tree["base"])
    options = {"root": str(tree["root"]), "allow_create": True, "allow_overwrite": True}
    with running_service("tftp", proto="udp", options=options) as svc:
        # the control: a file inside the root is served
        reply = P.decode(_tftp_exchange(svc.address, P.encode_request(P.RRQ, "ok.txt")))
        assert reply == P.Data(1, b"fine\n")
        for name in corpus(tree):
            raw = name.encode("utf-8", "surrogateescape")
            for opcode in (P.RRQ, P.WRQ):
                for mode in (b"octet", b"netascii"):
                    packet = bytes([0, opcode]) + raw + b"\0" + mode + b"\0"
                    answer = _tftp_exchange(svc.address, packet)
                    assert SECRET not in answer
                    if opcode == P.WRQ and name in LITERAL_INSIDE:
                        continue  # a legitimate name inside the root (checked below: nothing kept)
                    assert answer[:2] == b"\x00\x05", (name, opcode, answer[:40])
                    assert SECRET not in answer
                    error = P.decode(answer)
                    assert isinstance(error, P.Error) and error.code in (P.ERR_NOT_FOUND, P.ERR_ACCESS, P.ERR_ILLEGAL,
                                                                         P.ERR_EXISTS, P.ERR_UNDEFINED), (name, error)
        # NUL inside the name: the name ends there and what follows is not a mode
        for packet in (b"\x00\x01ok.txt\x00../outside/secret.txt\x00octet\x00",
                       b"\x00\x01../outside/secret.txt\x00\x00", b"\x00\x02\x00octet\x00"):
            answer = _tftp_exchange(svc.address, packet)
            assert answer[:2] == b"\x00\x05" and SECRET not in answer, (packet, answer[:40])
        # the service still serves afterwards
        assert P.decode(_tftp_exchange(svc.address, P.encode_request(P.RRQ, "ok.txt"))) == P.Data(1, b"fine\n")
    _assert_untouched(tree, before)
    # aborted uploads leave neither a temporary file nor a file under the final name
    assert not [p for p in tree["root"].iterdir() if p.name.endswith(".tftp-part") or p.name in LITERAL_INSIDE]


def test_tftp_client_reports_the_refusal(tree: dict[str, Path], tmp_path: Path) -> None:
    """Our own client turns the ERROR into TftpError and leaves no local file."""
    from inetkit.clients.tftp import TftpError, get_file

    with running_service("tftp", proto="udp", options={"root": str(tree["root"])}) as svc:
        for name in ("../outside/secret.txt", "link_out", "/etc/passwd", "fifo"):
            out = tmp_path / "got"
            with pytest.raises(TftpError) as info:
                get_file(svc.address[0], svc.address[1], name, str(out), timeout=1.0)
            assert info.value.code in (1, 2), (name, info.value)
            assert not out.exists()


# -- the files service (FX1: refusals are ERR lines) ------------------------------------------


def _fx1(address: tuple[str, int], line: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(address, timeout=5.0) as sock:
        sock.sendall(line + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _wire(name: str) -> list[bytes]:
    """The name as a client would encode it, and raw (servers must survive both)."""
    from urllib.parse import quote

    encoded = quote(name, safe="/").encode("ascii")
    raw = name.encode("utf-8", "surrogateescape").replace(b"\n", b"")
    return [encoded] if raw == encoded or b" " in raw else [encoded, raw]


def test_files_refuses_the_corpus(tree: dict[str, Path]) -> None:
    before = _snapshot(tree["base"])
    digest = hashlib.sha256(b"12345").hexdigest().encode()
    options = {"root": str(tree["root"]), "allow_upload": True, "allow_overwrite": True, "min_free": 0}
    with running_service("files", options=options) as svc:
        assert _fx1(svc.address, b"FX1 GET ok.txt 0\n").endswith(b"\nfine\n")
        names = corpus(tree) + ["ok.txt\0../outside/secret.txt", ".inetkit-partial/x"]
        for name in names:
            for wire in _wire(name):
                for line, body in ((b"FX1 GET %s 0\n" % wire, b""),
                                   (b"FX1 PUT %s 5 %s\n" % (wire, digest), b"12345")):
                    answer = _fx1(svc.address, line, body)
                    assert SECRET not in answer
                    if name in LITERAL_INSIDE and wire != name.encode():
                        # the client-side encoding of a literal '%2e%2e%2f...' name: a plain
                        # file inside the root, legitimately served or stored there
                        continue
                    assert answer.startswith(b"ERR 4"), (name, line[:60], answer[:80])
        # LIST shows only what is inside: no entry leads to the secret
        listing = _fx1(svc.address, b"FX1 LIST\n")
        assert listing.startswith(b"LIST ")
        for entry in listing.splitlines()[1:]:
            name = entry.split(b" ", 1)[1]
            assert SECRET not in _fx1(svc.address, b"FX1 GET %s 0\n" % name)
        assert _fx1(svc.address, b"FX1 GET ok.txt 0\n").endswith(b"\nfine\n")
    _assert_untouched(tree, before)
    assert sorted(p.name for p in tree["root"].iterdir()) == sorted(
        ["sub", "ok.txt", "link_out", "rel_link_out", "dirlink", "devzero", "loop", "fifo", ".inetkit-partial"]
        + (["zero"] if (tree["root"] / "zero").exists() else []) + sorted(LITERAL_INSIDE))
