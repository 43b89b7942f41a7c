"""A live, bounded fuzzer for every service of the default config.

``python -m inetkit.testing.fuzz [--seconds N] [--cases N] [--seed S]``

It starts ``inetkit serve --any-port`` (the embedded default config, every
port chosen by the OS, loopback only, a private data directory), then:

1. probes every service with a correct client (``PROBES``) and records the
   daemon's resources (file descriptors from ``/proc/PID/fd``, RSS, child
   processes) as the baseline;
2. throws bounded numbers of attacks at every service, spread round-robin:
   random bytes, mutations of a valid message of the service's own protocol
   (``SEEDS``), truncations, half-open connections (write side shut, or
   silent), resets in the middle of a reply (``SO_LINGER`` 0), abrupt closes,
   one-byte segments; for UDP random, mutated, truncated, empty and maximal
   datagrams and duplicate bursts;
3. waits (bounded) for the daemon to settle, probes every service again and
   checks that the daemon is alive, has no zombie children, and that its fd
   count and RSS are back within a small bound of the baseline.

Extending it to a new service means adding one probe to ``PROBES`` (keyed by
handler name, or by service name for exec'd programs, and transport) and, for
smarter mutations, a few valid messages to ``SEEDS``.  A default service
without a probe is reported as a failure, so the registry cannot fall behind.

Nothing here touches anything but 127.0.0.1 and the daemon it started.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: bytes planted in the files and tftp roots, fetched back by their probes
PROBE_FILE = "probe.txt"
PROBE_BYTES = b"inetkit fuzz probe file\n" * 64
#: attack sockets: every blocking call is bounded by this
ATTACK_TIMEOUT = 0.3
PROBE_TIMEOUT = 5.0


class ProbeFailed(Exception):
    """A correct client did not get the answer the protocol promises."""


# -- small socket helpers ---------------------------------------------------------------


def _tcp(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def _recv_until(sock: socket.socket, end: bytes | None, limit: int = 1 << 20) -> bytes:
    """Read until ``end`` appears (or EOF when ``end`` is None), bounded by ``limit``."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if end is not None and end in buf:
            break
    return bytes(buf)


def _udp(address: tuple[str, int], payload: bytes, timeout: float = PROBE_TIMEOUT, tries: int = 3) -> bytes:
    """One request/reply over a connected UDP socket, retried (UDP may drop)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / tries)
        sock.connect(address)
        for _ in range(tries):
            sock.send(payload)
            try:
                return sock.recv(65535)
            except TimeoutError:
                continue
    raise ProbeFailed(f"no UDP reply after {tries} tries")


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise ProbeFailed(what)


# -- probes: one correct client per (handler, transport) ------------------------------------

Probe = Callable[[tuple[str, int]], None]


def probe_echo_tcp(address: tuple[str, int]) -> None:
    """RFC 862: the bytes come back unchanged."""
    payload = os.urandom(16).hex().encode() + b"\n"
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(len(payload) - len(got))
            if not chunk:
                break
            got += chunk
    _expect(got == payload, f"echo returned {got[:40]!r}")


def probe_echo_udp(address: tuple[str, int]) -> None:
    payload = os.urandom(16).hex().encode()
    _expect(_udp(address, payload) == payload, "udp echo differs")


def probe_discard_tcp(address: tuple[str, int]) -> None:
    """RFC 863: everything is read, nothing sent; our half-close gets EOF back."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(b"x" * 4096)
        sock.shutdown(socket.SHUT_WR)
        _expect(_recv_until(sock, None, 4096) == b"", "discard sent bytes")


def probe_discard_udp(address: tuple[str, int]) -> None:
    """No reply, and no ICMP port unreachable (which a connected socket reports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.connect(address)
        sock.send(b"discard me")
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return
        except ConnectionRefusedError:
            raise ProbeFailed("port unreachable") from None
        raise ProbeFailed(f"discard replied {data[:40]!r}")


def probe_daytime_tcp(address: tuple[str, int]) -> None:
    """RFC 867: one line of ASCII, then the server closes."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        text = _recv_until(sock, None, 4096)
    _expect(text.endswith(b"\n") and text.isascii() and len(text) > 8, f"daytime {text!r}")


def probe_daytime_udp(address: tuple[str, int]) -> None:
    text = _udp(address, b"\n")
    _expect(text.isascii() and len(text) > 8, f"daytime {text!r}")


def probe_chargen_tcp(address: tuple[str, int]) -> None:
    """RFC 864: lines of 72 printable characters, endlessly; read a few, close."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        data = b""
        while len(data) < 74 * 3:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    first = data.split(b"\r\n", 1)[0]
    _expect(len(first) == 72 and all(0x20 <= b < 0x7F for b in first), f"chargen line {first[:80]!r}")


def probe_chargen_udp(address: tuple[str, int]) -> None:
    data = _udp(address, b"\n")
    _expect(0 < len(data) <= 512 and data.endswith(b"\r\n"), f"chargen datagram of {len(data)} bytes")


def _check_time(raw: bytes) -> None:
    _expect(len(raw) == 4, f"time reply of {len(raw)} bytes")
    value = struct.unpack("!I", raw)[0]
    now = int(time.time()) + 2208988800  # RFC 868 counts from 1900
    _expect(abs(((value - now + 2**31) % 2**32) - 2**31) < 86400, f"time {value} far from {now}")


def probe_time_tcp(address: tuple[str, int]) -> None:
    with _tcp(address, PROBE_TIMEOUT) as sock:
        _check_time(_recv_until(sock, None, 16))


def probe_time_udp(address: tuple[str, int]) -> None:
    _check_time(_udp(address, b""))


def _greet(address: tuple[str, int], expect_prefix: bytes) -> None:
    """The seed greeting: a NUL-terminated welcome, then our NUL-terminated line."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        welcome = _recv_until(sock, b"\0", 4096)
        _expect(welcome.startswith(expect_prefix) and b"\0" in welcome, f"greeting {welcome[:60]!r}")
        sock.sendall(b"I want a Telnet service\0")


def probe_greeting(address: tuple[str, int]) -> None:
    _greet(address, b"welcome to")


def probe_han(address: tuple[str, int]) -> None:
    """han writes its text with no NUL and exits: EOF ends it."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        text = _recv_until(sock, None, 4096)
    _expect(text.startswith(b"welcome to server, from han"), f"han {text[:60]!r}")


def probe_bit(address: tuple[str, int]) -> None:
    _greet(address, b"welcome to server, from bit")


def probe_udp_hello(address: tuple[str, int]) -> None:
    _expect(_udp(address, b"Hello Server").startswith(b"Hello Client"), "udp-hello reply")


def probe_hello_tcp(address: tuple[str, int]) -> None:
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(b"Hello from client")
        reply = _recv_until(sock, b"Hello from server", 4096)
    _expect(b"Hello from server" in reply, f"hello {reply[:60]!r}")


def probe_hello_udp(address: tuple[str, int]) -> None:
    _expect(_udp(address, b"Hello from client").startswith(b"Hello from server"), "udp hello reply")


def probe_chat(address: tuple[str, int]) -> None:
    """Name ourselves, say a line, get it echoed as ``<nick> text``."""
    nick = "probe" + os.urandom(3).hex()
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(nick.encode() + b"\n")
        sock.sendall(b"hello from the probe\n")
        data = _recv_until(sock, b"hello from the probe\n", 1 << 16)
    _expect(f"<{nick}> hello from the probe".encode() in data, f"chat {data[-120:]!r}")


def probe_file_push(address: tuple[str, int]) -> None:
    """Seed 004: the whole file until the server's half-close, then "Thank you"."""
    with _tcp(address, PROBE_TIMEOUT) as sock:
        data = _recv_until(sock, None, 1 << 24)
        _expect(len(data) > 0, "file-push sent nothing")
        try:
            sock.sendall(b"Thank you")
        except OSError:
            pass  # the server may already be gone; the file is complete at EOF


def probe_files(address: tuple[str, int]) -> None:
    """FX1: LIST shows the planted file, GET returns it with a matching digest."""
    digest = hashlib.sha256(PROBE_BYTES).hexdigest()
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(b"FX1 LIST\n")
        listing = _recv_until(sock, None, 1 << 20)
    _expect(listing.startswith(b"LIST ") and f" {PROBE_FILE}\n".encode() in listing, f"LIST {listing[:80]!r}")
    with _tcp(address, PROBE_TIMEOUT) as sock:
        sock.sendall(f"FX1 GET {PROBE_FILE} 0\n".encode())
        data = _recv_until(sock, None, 1 << 20)
    header, _, body = data.partition(b"\n")
    _expect(header == f"FILE {len(PROBE_BYTES)} {digest}".encode() and body == PROBE_BYTES, f"GET {header[:90]!r}")


def probe_tftp(address: tuple[str, int]) -> None:
    """RFC 1350 read of the planted file, with a blksize option (RFC 2348)."""
    from inetkit.clients.tftp import get_file

    with tempfile.TemporaryDirectory(prefix="inetkit-probe-") as tmp:
        out = os.path.join(tmp, "got")
        get_file(address[0], address[1], PROBE_FILE, out, blksize=1024, timeout=1.0)
        _expect(Path(out).read_bytes() == PROBE_BYTES, "tftp file differs")


def probe_udp_file(address: tuple[str, int]) -> None:
    """Seed 002 practice 2: pieces of a file, then ``DONE``, answered by ``DONE``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect(address)
        sock.send(b"inetkit probe piece\n")
        sock.send(b"DONE")
        _expect(sock.recv(64).startswith(b"DONE"), "udp-file did not answer DONE")


#: (handler name, or service name for exec'd programs; transport) -> probe
PROBES: dict[tuple[str, str], Probe] = {
    ("echo", "tcp"): probe_echo_tcp,
    ("echo", "udp"): probe_echo_udp,
    ("discard", "tcp"): probe_discard_tcp,
    ("discard", "udp"): probe_discard_udp,
    ("daytime", "tcp"): probe_daytime_tcp,
    ("daytime", "udp"): probe_daytime_udp,
    ("chargen", "tcp"): probe_chargen_tcp,
    ("chargen", "udp"): probe_chargen_udp,
    ("time", "tcp"): probe_time_tcp,
    ("time", "udp"): probe_time_udp,
    ("greeting", "tcp"): probe_greeting,
    ("han", "tcp"): probe_han,
    ("bit", "tcp"): probe_bit,
    ("udp-hello", "udp"): probe_udp_hello,
    ("hello", "tcp"): probe_hello_tcp,
    ("hello", "udp"): probe_hello_udp,
    ("chat", "tcp"): probe_chat,
    ("file-push", "tcp"): probe_file_push,
    ("files", "tcp"): probe_files,
    ("tftp", "udp"): probe_tftp,
    ("udp-file", "udp"): probe_udp_file,
}


def _tftp_seeds() -> list[bytes]:
    rrq = b"\x00\x01" + PROBE_FILE.encode() + b"\0octet\0"
    return [
        rrq,
        rrq + b"blksize\x001428\x00tsize\x000\x00windowsize\x004\x00timeout\x001\x00",
        b"\x00\x01../../etc/passwd\0netascii\0",
        b"\x00\x02upload.bin\0octet\0tsize\x00100\x00",
        b"\x00\x03\x00\x01" + b"A" * 512,
        b"\x00\x04\x00\x01",
        b"\x00\x05\x00\x01oops\0",
        b"\x00\x06blksize\x00512\x00",
    ]


_DIGEST = hashlib.sha256(b"0123456789").hexdigest().encode()

#: valid messages of each protocol, the starting points of the mutations
SEEDS: dict[str, list[bytes]] = {
    "echo": [b"hello echo\n", bytes(range(256))],
    "discard": [b"x" * 1000],
    "daytime": [b"\n"],
    "time": [b""],
    "chargen": [b"\n"],
    "greeting": [b"I want a Telnet service\0" + b"\0" * 233],
    "han": [b""],
    "bit": [b"I want a Telnet service\0"],
    "udp-hello": [b"Hello Server\0"],
    "hello": [b"Hello from client"],
    "chat": [
        b"alice\nhello room\n/join den\n/who\n/rooms\n/msg bob hi\n/me waves\n/part\n/quit bye\n",
        b"/nick bob\r\n\x1b[31mred\x1b[0m\r\n//slash\r\nexit\r\n",
    ],
    "file-push": [b"Thank you"],
    "files": [
        b"FX1 LIST\n",
        f"FX1 GET {PROBE_FILE} 0\n".encode(),
        f"FX1 GET {PROBE_FILE} 100\n".encode(),
        b"FX1 PUT up.bin 10 " + _DIGEST + b"\n0123456789",
        b"FX1 GET %2e%2e/%2e%2e/etc/passwd 0\n",
    ],
    "tftp": _tftp_seeds(),
    "udp-file": [b"a piece of a file", b"DONE"],
}

#: bytes that make parsers take unusual branches
_INTERESTING = [
    b"\0", b"\xff", b"\n", b"\r\n", b"%", b"%2e%2e/", b"../", b"/", b"\\", b" ", b"\x1b[2J",
    b"99999999999999999999999", b"-1", b"0", b"\xc3\x28", b"\xed\xa0\x80", b"A" * 5000,
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits of ``data``: flips, inserts, deletes,
    duplications, truncations and splices of interesting tokens."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = os.urandom(rng.randint(1, 16))
        elif op == 2 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 3 and buf:
            end = min(len(buf), pos + rng.randint(1, 64))
            buf[pos:pos] = buf[pos:end] * rng.randint(1, 8)
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            buf[pos:pos] = rng.choice(_INTERESTING)
        else:
            # replace a run of digits by an extreme number
            digits = [m.span() for m in re.finditer(rb"[0-9]+", bytes(buf))]
            if digits:
                a, b = rng.choice(digits)
                buf[a:b] = rng.choice([b"0", b"65535", b"65536", b"4294967296", b"9" * 30, b"-5", b"01"])
    return bytes(buf[:70000])


# -- attacks ----------------------------------------------------------------------------


def _reset_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _drain(sock: socket.socket, seconds: float, limit: int = 1 << 16) -> int:
    got = 0
    deadline = time.monotonic() + seconds
    try:
        while got < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass
    return got


def stream_attack(rng: random.Random, address: tuple[str, int], seeds: list[bytes]) -> str:
    """One TCP attack; returns its kind.  Never raises for network errors."""
    kind = rng.choice(["garbage", "mutated", "mutated", "truncated", "half-close", "silent", "reset", "abrupt", "dribble"])
    seed = rng.choice(seeds) if seeds else b""
    try:
        sock = socket.create_connection(address, timeout=ATTACK_TIMEOUT)
    except OSError:
        return kind
    try:
        if kind == "garbage":
            sock.sendall(os.urandom(rng.choice([1, 7, 64, 1000, 9000])))
            _drain(sock, 0.05)
        elif kind == "mutated":
            sock.sendall(mutate(rng, seed))
            _drain(sock, 0.05)
        elif kind == "truncated":
            sock.sendall(seed[: rng.randint(0, max(0, len(seed) - 1))])
            sock.shutdown(socket.SHUT_WR)
            _drain(sock, 0.2)
        elif kind == "half-close":
            sock.shutdown(socket.SHUT_WR)
            _drain(sock, 0.1)
        elif kind == "silent":
            # connected, says nothing, then vanishes: a half-open peer
            time.sleep(rng.uniform(0.0, 0.2))
            _reset_close(sock)
            return kind
        elif kind == "reset":
            sock.sendall(seed or b"x")
            _drain(sock, 0.02, limit=rng.choice([1, 100, 5000]))
            _reset_close(sock)
            return kind
        elif kind == "abrupt":
            _reset_close(sock)
            return kind
        else:  # dribble: one-byte segments
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in mutate(rng, seed)[:32]:
                sock.send(bytes([b]))
            _drain(sock, 0.05)
    except OSError:
        pass
    sock.close()
    return kind


def spoofed_datagram(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
    """Send one IPv4 UDP datagram with a forged source (raw socket: root only;
    UDP checksum 0 means "none" over IPv4)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp, (dst[0], 0))


def can_spoof() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError:
        return False
    return True


def datagram_attack(rng: random.Random, address: tuple[str, int], seeds: list[bytes],
                    spoof_ports: list[int] | None = None) -> str:
    """One UDP attack; returns its kind.  With ``spoof_ports`` (the daemon's own
    UDP ports; needs a raw socket) some datagrams come "from" one of them or
    from a classic small-service port: loop and reflection requests."""
    kinds = ["garbage", "mutated", "mutated", "truncated", "empty", "huge", "burst"]
    kind = rng.choice(kinds + (["spoofed"] if spoof_ports else []))
    seed = rng.choice(seeds) if seeds else b""
    if kind == "spoofed":
        assert spoof_ports
        port = rng.choice([*spoof_ports, 7, 19, rng.randint(1024, 65535)])
        try:
            spoofed_datagram(("127.0.0.1", port), address, mutate(rng, seed) if rng.random() < 0.5 else seed)
        except OSError:
            pass
        return kind
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.02)
        try:
            if kind == "garbage":
                sock.sendto(os.urandom(rng.choice([1, 2, 4, 100, 1500])), address)
            elif kind == "mutated":
                sock.sendto(mutate(rng, seed), address)
            elif kind == "truncated":
                sock.sendto(seed[: rng.randint(0, max(0, len(seed) - 1))], address)
            elif kind == "empty":
                sock.sendto(b"", address)
            elif kind == "huge":
                sock.sendto(os.urandom(65507), address)
            else:
                payload = mutate(rng, seed)
                for _ in range(rng.randint(2, 20)):
                    sock.sendto(payload, address)
            try:
                sock.recvfrom(65535)
            except OSError:
                pass
        except OSError:
            pass
    return kind


# -- daemon resources -------------------------------------------------------------------


@dataclass
class Resources:
    """One snapshot of a daemon's process tree."""

    fds: int
    rss_kib: int
    children: int
    zombies: int

    def __str__(self) -> str:
        return f"fds={self.fds} rss={self.rss_kib / 1024:.1f}MiB children={self.children} zombies={self.zombies}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def resources(pid: int) -> Resources:
    """fds and RSS of the daemon (its own process), children and zombies of its tree.

    Only the daemon's own fds and RSS are compared: exec'd children come and
    go with connections, and fork-model acceptors are counted as processes."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    tree = _tree(pid)[1:]
    zombies = sum(1 for p in tree if _state(p) == "Z")
    return Resources(fds, rss, len(tree), zombies)


# -- running --------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    proto: str
    key: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.proto}"


@dataclass
class Row:
    target: Target
    cases: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    before: str = "-"
    after: str = "-"


@dataclass
class Report:
    rows: list[Row]
    cases: int
    seconds: float
    seed: int
    baseline: Resources
    final: Resources
    alive: bool
    tracebacks: int
    log_tail: str = ""
    #: CPU seconds the daemon used in one idle second after the campaign
    idle_cpu: float = 0.0
    #: whether forged-source datagrams were part of the campaign (root only)
    spoofing: bool = False
    #: allowed growth: fds and RSS (KiB) over the baseline; CPU while idle
    fd_slack: int = 3
    rss_slack_kib: int = 16 * 1024
    idle_cpu_max: float = 0.1

    @property
    def probe_failures(self) -> list[str]:
        return [f"{r.target.label}: {r.after}" for r in self.rows if r.after != "ok"]

    @property
    def fd_ok(self) -> bool:
        return 0 <= self.final.fds <= self.baseline.fds + self.fd_slack

    @property
    def rss_ok(self) -> bool:
        return self.final.rss_kib <= self.baseline.rss_kib + self.rss_slack_kib

    @property
    def ok(self) -> bool:
        return (self.alive and not self.probe_failures and self.fd_ok and self.rss_ok
                and self.final.zombies == 0 and self.tracebacks == 0 and self.idle_cpu <= self.idle_cpu_max)

    def table(self) -> str:
        lines = [f"{'service':<20} {'cases':>6}  {'probe before':<13} {'probe after':<13} attacks"]
        for r in self.rows:
            kinds = " ".join(f"{k}={v}" for k, v in sorted(r.kinds.items()))
            lines.append(f"{r.target.label:<20} {r.cases:>6}  {r.before[:13]:<13} {r.after[:13]:<13} {kinds}")
        lines.append("")
        lines.append(f"cases: {self.cases} in {self.seconds:.1f}s (seed {self.seed}); daemon alive: {self.alive}; "
                     f"tracebacks in log: {self.tracebacks}; forged sources: {'yes' if self.spoofing else 'no (not root)'}")
        lines.append(f"idle CPU after: {self.idle_cpu:.2f}s per s (bound {self.idle_cpu_max}: "
                     f"{'ok' if self.idle_cpu <= self.idle_cpu_max else 'EXCEEDED'})")
        lines.append(f"baseline: {self.baseline}")
        lines.append(f"after:    {self.final}  (fd bound +{self.fd_slack}: {'ok' if self.fd_ok else 'EXCEEDED'}, "
                     f"RSS bound +{self.rss_slack_kib // 1024}MiB: {'ok' if self.rss_ok else 'EXCEEDED'})")
        for failure in self.probe_failures:
            lines.append(f"PROBE FAILED {failure}")
        lines.append("RESULT: " + ("held" if self.ok else "FAILED"))
        return "\n".join(lines)


def run_probe(target: Target) -> str:
    """'ok', 'no probe', or the failure in a few words."""
    probe = PROBES.get((target.key, target.proto))
    if probe is None:
        return "no probe"
    last = "?"
    # a UDP probe may lose a datagram, and the iterative greeting may still be
    # finishing an attack connection: a few tries, each bounded
    for _ in range(3):
        try:
            probe(target.address)
            return "ok"
        except (ProbeFailed, OSError, EOFError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a client-library error type (TftpError, ...)
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    return last


def targets_of(ports: dict[tuple[str, str], int]) -> list[Target]:
    """Pair every bound (name, proto) with its probe key from the default config."""
    from inetkit.config.toml import load_default

    keys: dict[tuple[str, str], str] = {(s.name, s.proto): (s.handler or s.name) for s in load_default().services}
    return [Target(name, proto, keys.get((name, proto), name), port) for (name, proto), port in sorted(ports.items())]


#: (service, sub-table, TOML lines) appended to the default config for fuzzing:
#: state a service holds *by design* for longer than a fuzz run would otherwise
#: look like a leak (udp-file keeps up to max_senders partial files open until
#: idle_timeout, 60 s by default, and expires them when the next datagram comes)
FUZZ_OVERRIDES: list[tuple[str, str, str]] = [
    ("udp-file", "options", "idle_timeout = 2"),
]


def fuzz_config_text() -> str:
    """The embedded default config plus ``FUZZ_OVERRIDES`` (each only when the
    service exists and does not define that table itself)."""
    from importlib import resources

    text = (resources.files("inetkit.config") / "default.toml").read_text()
    for name, table, body in FUZZ_OVERRIDES:
        if f"[services.{name}]" in text and f"[services.{name}.{table}]" not in text:
            text += f"\n[services.{name}.{table}]\n{body}\n"
    return text


@contextmanager
def fuzz_daemon(workdir: Path) -> Iterator[tuple[object, Path]]:
    """``inetkit serve --any-port`` on the default config (plus FUZZ_OVERRIDES)
    with a private data directory (the files and tftp roots hold the probe
    file), its log captured to a file."""
    from inetkit.testing.running import RunningDaemon, _wait_ready, stop_process

    xdg = workdir / "data"
    for sub in ("files", "tftp"):
        (xdg / "inetkit" / sub).mkdir(parents=True, exist_ok=True)
        (xdg / "inetkit" / sub / PROBE_FILE).write_bytes(PROBE_BYTES)
    log_path = workdir / "daemon.log"
    config = workdir / "fuzz.toml"
    config.write_text(fuzz_config_text())
    env = {**os.environ, "XDG_DATA_HOME": str(xdg), "XDG_RUNTIME_DIR": str(workdir)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inetkit.cli.main", "serve", "-c", str(config), "--any-port", "--no-control",
             "--no-connection-log"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=workdir,
        )
    daemon = RunningDaemon(proc)
    try:
        _wait_ready(daemon, 30.0)
        yield daemon, log_path
    finally:
        stop_process(proc)


def settle(pid: int, baseline: Resources, fd_slack: int, seconds: float) -> Resources:
    """Poll until the fd count is back within ``fd_slack`` and no zombie is
    left, at most ``seconds``; returns the last snapshot."""
    deadline = time.monotonic() + seconds
    while True:
        now = resources(pid)
        if (0 <= now.fds <= baseline.fds + fd_slack and now.zombies == 0) or time.monotonic() >= deadline:
            return now
        time.sleep(0.2)


def fuzz(seconds: float = 30.0, cases: int = 5000, seed: int | None = None, workers: int = 8,
         settle_seconds: float = 15.0) -> Report:
    """Run the whole campaign (see the module docstring) and return its report."""
    seed = random.randrange(2**32) if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="inetkit-fuzz-") as tmp, fuzz_daemon(Path(tmp)) as (daemon, log_path):
        pid = daemon.pid  # type: ignore[attr-defined]
        rows = [Row(t) for t in targets_of(daemon.ports)]  # type: ignore[attr-defined]
        for row in rows:
            row.before = run_probe(row.target)
        # a second round so lazily created state (thread pools, caches) is in the baseline
        for row in rows:
            run_probe(row.target)
        baseline = settle(pid, resources(pid), 0, 3.0)
        spoof_ports = [r.target.port for r in rows if r.target.proto == "udp"] if can_spoof() else []
        started = time.monotonic()
        stop_at = started + seconds
        lock = threading.Lock()
        counter = iter(range(cases))

        def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.monotonic() < stop_at:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                row = rows[n % len(rows)]
                seeds = SEEDS.get(row.target.key, [])
                if row.target.proto == "tcp":
                    kind = stream_attack(rng, row.target.address, seeds)
                else:
                    kind = datagram_attack(rng, row.target.address, seeds, spoof_ports)
                with lock:
                    row.cases += 1
                    row.kinds[kind] = row.kinds.get(kind, 0) + 1

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(worker, range(workers)))
        elapsed = time.monotonic() - started
        # a short pause first: abandoned TFTP transfers give up, udp-file partials
        # go idle (they are expired by the next datagram, which the probe sends)
        settle(pid, baseline, 3, 3.0)
        for row in rows:
            row.after = run_probe(row.target)
        final = settle(pid, baseline, 3, settle_seconds)
        # an idle daemon burns no CPU: a UDP loop or a spinning task would show here
        before_cpu = cpu_seconds(pid)
        time.sleep(1.0)
        idle_cpu = cpu_seconds(pid) - before_cpu
        alive = daemon.process.poll() is None  # type: ignore[attr-defined]
        log = log_path.read_text(errors="replace")
        tracebacks = log.count("Traceback (most recent call last)")
        tail = "\n".join(log.splitlines()[-30:])
        return Report(rows, sum(r.cases for r in rows), elapsed, seed, baseline, final, alive, tracebacks, tail,
                      idle_cpu=idle_cpu, spoofing=bool(spoof_ports))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inetkit.testing.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="time budget of the attack phase (default 30)")
    parser.add_argument("--cases", type=int, default=5000, help="most attack cases in all (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent attackers (default 8)")
    args = parser.parse_args(argv)
    report = fuzz(args.seconds, args.cases, args.seed, args.workers)
    print(report.table())
    if not report.ok and report.tracebacks:
        print("--- daemon log tail ---")
        print(report.log_tail)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
