"""Faults: lossy UDP, cut TCP, a full disk, misbehaving programs, reload and
drain under load.  Nothing is lost, nothing partial looks complete, and the
daemon keeps serving everyone else.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inetkit.config.toml import load_default
from inetkit.testing import fuzz
from inetkit.testing.running import running_daemon, running_services, service_config

# -- UDP: loss, duplication, reordering, delay (inetkit.testing.lossy) ----------------------

Check = Callable[[bytes], bool]

#: what to send to each UDP service and how to recognise a right answer; a
#: default UDP service missing here fails test_every_udp_service_is_covered
UDP_EXCHANGES: dict[str, tuple[bytes, Check]] = {
    "echo": (b"lossy-echo", lambda r: r == b"lossy-echo"),
    "daytime": (b"\n", lambda r: r.isascii() and len(r) > 8),
    "chargen": (b"\n", lambda r: 0 < len(r) <= 512 and r.endswith(b"\r\n")),
    "time": (b"", lambda r: len(r) == 4),
    "udp-hello": (b"Hello Server", lambda r: r.startswith(b"Hello Client")),
    "hello": (b"Hello from client", lambda r: r.startswith(b"Hello from server")),
}
#: UDP services that by design never answer or cannot survive loss (checked apart)
UDP_SPECIAL = {"discard", "tftp", "udp-file"}


def _udp_keys() -> list[str]:
    return sorted({(s.handler or s.name) for s in load_default().services if s.proto == "udp"})


def test_every_udp_service_is_covered() -> None:
    assert [k for k in _udp_keys() if k not in UDP_EXCHANGES and k not in UDP_SPECIAL] == []


def _exchange(address: tuple[str, int], payload: bytes, tries: int = 20, wait: float = 0.08) -> tuple[bytes, int]:
    """Request/reply with retransmission; returns (reply, attempts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.connect(address)
        for attempt in range(1, tries + 1):
            sock.send(payload)
            try:
                return sock.recv(65535), attempt
            except TimeoutError:
                continue
    raise AssertionError(f"no reply in {tries} tries")


def test_udp_services_through_a_lossy_link() -> None:
    from inetkit.testing.lossy import Impairment, LossyRelay

    keys = [k for k in _udp_keys() if k in UDP_EXCHANGES]
    bad = Impairment(drop=0.25, duplicate=0.2, reorder=0.2, delay=0.002, jitter=0.003)
    configs = [service_config(k, proto="udp") for k in keys] + [service_config("discard", proto="udp")]
    with running_services(configs) as services:
        by_key = dict(zip(keys + ["discard"], services))
        retries = 0
        for key in keys:
            payload, check = UDP_EXCHANGES[key]
            with LossyRelay(by_key[key].address, to_server=bad, to_client=bad, seed=len(key)) as relay:
                for _ in range(10):
                    reply, attempts = _exchange(relay.address, payload)
                    assert check(reply), (key, reply[:60])
                    retries += attempts - 1
                assert relay.stats.dropped > 0
        assert retries > 0  # the link really lost datagrams
        # discard: never a reply, however many duplicates arrive
        with LossyRelay(by_key["discard"].address, to_server=Impairment(duplicate=0.5), seed=3) as relay:
            with pytest.raises(AssertionError):
                _exchange(relay.address, b"x", tries=3, wait=0.1)


def test_tftp_through_a_lossy_link(tmp_path: Path) -> None:
    from inetkit.clients.tftp import get_file, put_file
    from inetkit.testing.lossy import Impairment, LossyRelay

    root = tmp_path / "root"
    root.mkdir()
    data = random.Random(5).randbytes(120_000)
    (root / "big.bin").write_bytes(data)
    (tmp_path / "up.bin").write_bytes(data[::-1])
    bad = Impairment(drop=0.05, duplicate=0.05, reorder=0.05, jitter=0.002)
    with running_service_tftp(root) as svc, LossyRelay(svc.address, to_server=bad, to_client=bad, seed=9) as relay:
        get_file(relay.address[0], relay.address[1], "big.bin", str(tmp_path / "got.bin"), blksize=1428, windowsize=4)
        assert (tmp_path / "got.bin").read_bytes() == data
        put_file(relay.address[0], relay.address[1], str(tmp_path / "up.bin"), "up.bin", blksize=1428)
        deadline = time.monotonic() + 5  # the server renames once its final ACK is out
        while not (root / "up.bin").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (root / "up.bin").read_bytes() == data[::-1]
        assert relay.stats.dropped > 0 and relay.stats.duplicated > 0


def running_service_tftp(root: Path, **options: object):  # type: ignore[no-untyped-def]
    from inetkit.testing.running import running_service

    return running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True, **options})


# -- TCP cut at random points (inetkit.testing.cutproxy) ----------------------------------------


def test_files_upload_and_download_resume_after_cuts(tmp_path: Path) -> None:
    from inetkit.clients.files import TransferError, download, upload
    from inetkit.testing.cutproxy import CutProxy
    from inetkit.testing.running import running_service

    root = tmp_path / "root"
    root.mkdir()
    data = random.Random(1).randbytes(3_000_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    rng = random.Random(2)
    options = {"root": str(root), "allow_upload": True, "min_free": 0}
    with running_service("files", options=options) as svc:
        # upload: cut client->server at a random point, the final name must not appear
        cut_at = rng.randrange(10_000, len(data) - 10_000)
        with CutProxy(svc.address, cut_after=cut_at, direction="up") as proxy:
            with pytest.raises(TransferError):
                upload(*proxy.address, str(src), "dst.bin", timeout=5)
            assert not (root / "dst.bin").exists()
            result = upload(*proxy.address, str(src), "dst.bin", timeout=5)
        assert 0 < result.offset <= cut_at  # resumed, not restarted
        assert (root / "dst.bin").read_bytes() == data
        # download: cut server->client, resume from the part file
        out = tmp_path / "out.bin"
        cut_at = rng.randrange(10_000, len(data) - 10_000)
        with CutProxy(svc.address, cut_after=cut_at, direction="down") as proxy:
            with pytest.raises(TransferError):
                download(*proxy.address, "dst.bin", str(out), timeout=5)
            assert not out.exists()  # only out.bin.part, never a short out.bin
            result = download(*proxy.address, "dst.bin", str(out), resume=True, timeout=5)
        assert result.offset > 0
        assert out.read_bytes() == data
        assert not Path(str(out) + ".part").exists()


def test_file_push_cut_leaves_nothing(tmp_path: Path) -> None:
    from inetkit.clients.push import push_get
    from inetkit.testing.cutproxy import CutProxy
    from inetkit.testing.running import running_service

    payload = random.Random(4).randbytes(500_000)
    (tmp_path / "push.bin").write_bytes(payload)
    with running_service("file-push", options={"path": str(tmp_path / "push.bin")}) as svc:
        out = tmp_path / "got.bin"
        with CutProxy(svc.address, cut_after=123_457, direction="down") as proxy:
            with pytest.raises(Exception):
                push_get(*proxy.address, str(out), timeout=5)
            assert not out.exists() and not Path(str(out) + ".part").exists()
            push_get(*proxy.address, str(out), timeout=5)
        assert out.read_bytes() == payload


def _read_until(sock: socket.socket, needle: bytes, limit: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while needle not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_chat_cut_mid_conversation(tmp_path: Path) -> None:
    """A member whose link is cut disappears cleanly (others see it leave,
    in order, nothing garbled) and can come back under the same nickname."""
    from inetkit.testing.cutproxy import CutProxy
    from inetkit.testing.running import running_service

    with running_service("chat", options={"rate": 0}) as svc:
        with socket.create_connection(svc.address, timeout=5) as bob:
            bob.sendall(b"bob\n")
            _read_until(bob, b"bob")
            with CutProxy(svc.address, cut_after=400, direction="down") as proxy:
                alice = socket.create_connection(proxy.address, timeout=5)
                try:
                    alice.sendall(b"alice\n")
                    for i in range(200):
                        try:
                            alice.sendall(b"line %d\n" % i)
                        except OSError:
                            break
                    # bob sees alice's lines in order, then her leaving (one read loop:
                    # under load the join, the lines and the leave can come in one recv)
                    seen = _read_until(bob, b"left", 10.0)
                    assert b"alice" in seen
                finally:
                    alice.close()
                numbers = [int(m.split(b" ")[-1]) for m in seen.splitlines() if m.startswith(b"<alice> line ")]
                assert numbers == sorted(numbers) and numbers == list(range(len(numbers)))
                # the nickname is free again at once
                with socket.create_connection(svc.address, timeout=5) as again:
                    again.sendall(b"alice\nback\n")
                    assert b"<alice> back" in _read_until(again, b"<alice> back")


# -- disk full during uploads --------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only); skipped cleanly where mounting is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"tmpfs mount not permitted: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_disk_full_tftp_upload(tiny_fs: Path, tmp_path: Path) -> None:
    from inetkit.clients.tftp import TftpError, get_file, put_file

    (tiny_fs / "small.txt").write_bytes(b"still here\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2_000_000))
    with running_service_tftp(tiny_fs, max_size=0) as svc:
        for tsize in (False, True):  # discovered while writing, and announced up front
            with pytest.raises(TftpError) as info:
                put_file(*svc.address, str(big), "big.bin", blksize=1428, tsize=tsize, timeout=1.0)
            assert info.value.code == 3, info.value  # ERROR 3: disk full or allocation exceeded
            assert not (tiny_fs / "big.bin").exists()
        deadline = time.monotonic() + 5
        while [p for p in tiny_fs.iterdir() if p.name != "small.txt"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.name for p in tiny_fs.iterdir()] == ["small.txt"]  # no temporary file left
        get_file(*svc.address, "small.txt", str(tmp_path / "small.txt"))
        assert (tmp_path / "small.txt").read_bytes() == b"still here\n"


def test_disk_full_files_upload(tiny_fs: Path, tmp_path: Path) -> None:
    from inetkit.clients.files import TransferError, list_files, upload
    from inetkit.testing.running import running_service

    (tiny_fs / "small.txt").write_bytes(b"still here\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2_000_000))
    with running_service("files", options={"root": str(tiny_fs), "allow_upload": True, "min_free": 0}) as svc:
        with pytest.raises(TransferError) as info:
            upload(*svc.address, str(big), "big.bin", timeout=5)
        assert info.value.status == 507, info.value
        assert not (tiny_fs / "big.bin").exists()
        assert [e.name for e in list_files(*svc.address)] == ["small.txt"]
        # an upload that fits still works
        ok = tmp_path / "ok.bin"
        ok.write_bytes(b"y" * 100_000)
        upload(*svc.address, str(ok), "ok.bin", timeout=5)
        assert (tiny_fs / "ok.bin").read_bytes() == b"y" * 100_000


# -- exec'd programs that crash, hang, loop, ignore SIGTERM -----------------------------------

PY = sys.executable
EXEC_CONFIG = f"""
[daemon]
grace = 1

[services.crash]
port = 0
proto = "tcp"
model = "exec"
program = ["{PY}", "-c", "import os; os.write(1, b'partial'); os.abort()"]

[services.false]
port = 0
proto = "tcp"
model = "exec"
program = ["/bin/false"]

[services.false-wait]
port = 0
proto = "udp"
model = "wait"
program = ["/bin/false"]

[services.hang]
port = 0
proto = "tcp"
model = "exec"
program = ["{PY}", "-c", "import time; time.sleep(60)"]

[services.stubborn]
port = 0
proto = "tcp"
model = "exec"
program = ["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 60"]

[services.echo]
port = 0
proto = "tcp"
"""


def _log_of(tmp_path: Path) -> Path:
    return tmp_path / "daemon.log"


def test_misbehaving_programs(tmp_path: Path) -> None:
    log_path = tmp_path / "daemon.log"
    stderr_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(2)
    os.dup2(stderr_fd, 2)  # the daemon inherits our stderr: capture its log
    try:
        ctx = running_daemon("--any-port", "--no-control", config_text=EXEC_CONFIG, tmp_path=tmp_path)
        daemon = ctx.__enter__()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(stderr_fd)
    stopped = False
    try:
        echo = ("127.0.0.1", daemon.port("echo", "tcp"))
        # a crash: the client gets what was written, then EOF; the exit is logged
        with socket.create_connection(("127.0.0.1", daemon.port("crash", "tcp")), timeout=5) as sock:
            assert fuzz._recv_until(sock, None) == b"partial"
        # /bin/false in a loop: throttled after a few quick failures
        started = time.monotonic()
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", daemon.port("false", "tcp")), timeout=10) as sock:
                assert sock.recv(16) == b""
        assert time.monotonic() - started >= 0.5  # the guard held new starts back
        # inetd "wait" UDP with a program that never reads: respawned, but throttled
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"never read", ("127.0.0.1", daemon.port("false-wait", "udp")))
        time.sleep(3.0)  # observe the respawn rate over a fixed window
        log = log_path.read_text(errors="replace")
        spawns = log.count("false-wait wait pid=")
        assert 3 <= spawns <= 8, spawns  # unthrottled, /bin/false would be respawned every few ms
        assert re.search(r"keeps failing at once.*throttled", log), log[-2000:]
        assert "exit=-6" in log or "exit=134" in log or "SIGABRT" in log, log[-2000:]
        # a hung program and one that ignores SIGTERM: others unaffected meanwhile
        hung = socket.create_connection(("127.0.0.1", daemon.port("hang", "tcp")), timeout=5)
        stubborn = socket.create_connection(("127.0.0.1", daemon.port("stubborn", "tcp")), timeout=5)
        try:
            assert stubborn.recv(16) == b"ready\n"  # its TERM trap is in place
            for _ in range(5):
                fuzz.probe_echo_tcp(echo)
            children = fuzz._tree(daemon.pid)[1:]
            assert len(children) >= 2
            # SIGTERM: drain for the 1 s grace, then the stubborn ones are killed
            started = time.monotonic()
            daemon.process.send_signal(signal.SIGTERM)
            code = daemon.process.wait(15)
            stopped = True
            assert time.monotonic() - started < 8
            assert code == 0
            for pid in children:
                assert fuzz._state(pid) in ("?", "Z") or not Path(f"/proc/{pid}").exists(), pid
            # the connections were closed by the kill, not left hanging
            hung.settimeout(5)
            stubborn.settimeout(5)
            assert hung.recv(16) == b""
            assert stubborn.recv(16) == b""
        finally:
            hung.close()
            stubborn.close()
    finally:
        ctx.__exit__(None, None, None)
    assert stopped


# -- SIGHUP reload and SIGTERM drain under load ---------------------------------------------------

LOAD_CONFIG = """
[daemon]
grace = {grace}

[services.echo]
port = 0
proto = "tcp"
{extra}
"""


def _stream_echo(address: tuple[str, int], total: int, results: list[str], pause: float) -> None:
    """Send ``total`` random bytes in chunks through echo, check every byte back."""
    data = os.urandom(total)
    try:
        with socket.create_connection(address, timeout=10) as sock:
            got = bytearray()
            for i in range(0, total, 16384):
                sock.sendall(data[i:i + 16384])
                while len(got) < min(total, i + 16384):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise EOFError(f"EOF after {len(got)} of {total} bytes")
                    got += chunk
                time.sleep(pause)
            results.append("ok" if hashlib.sha256(got).digest() == hashlib.sha256(data).digest() else "corrupt")
    except Exception as exc:  # reported, and fails the test below
        results.append(f"{type(exc).__name__}: {exc}")


def _load(address: tuple[str, int], clients: int, total: int, pause: float) -> tuple[list[threading.Thread], list[str]]:
    results: list[str] = []
    threads = [threading.Thread(target=_stream_echo, args=(address, total, results, pause), daemon=True)
               for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, results


def test_sighup_reload_under_load(tmp_path: Path) -> None:
    extra = '[services.echo.limits]\nidle_timeout = 30\n'
    with running_daemon("--any-port", "--no-control", config_text=LOAD_CONFIG.format(grace=5, extra=extra),
                        tmp_path=tmp_path) as daemon:
        address = ("127.0.0.1", daemon.port("echo", "tcp"))
        threads, results = _load(address, 8, 1_000_000, 0.03)
        time.sleep(0.3)
        # first reload: echo unchanged (kept), a new service added
        (tmp_path / "inetkit-test.toml").write_text(LOAD_CONFIG.format(grace=5, extra=extra) +
                                                   '\n[services.daytime]\nport = 0\nproto = "tcp"\n')
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        # second reload: echo itself changed (its limits): the new one takes over the
        # listener while the old one's established connections finish
        changed = extra.replace("idle_timeout = 30", "idle_timeout = 31")
        (tmp_path / "inetkit-test.toml").write_text(LOAD_CONFIG.format(grace=5, extra=changed))
        daemon.process.send_signal(signal.SIGHUP)
        assert results == []  # both reloads landed while every stream was still going
        for t in threads:
            t.join(30)
        assert results == ["ok"] * 8, results
        fuzz.probe_echo_tcp(address)  # the listener survived the reload
        assert daemon.process.poll() is None


def test_sigterm_drain_under_load(tmp_path: Path) -> None:
    with running_daemon("--any-port", "--no-control", config_text=LOAD_CONFIG.format(grace=10, extra=""),
                        tmp_path=tmp_path) as daemon:
        address = ("127.0.0.1", daemon.port("echo", "tcp"))
        threads, results = _load(address, 8, 600_000, 0.02)
        time.sleep(0.3)
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert results == ["ok"] * 8, results  # every established connection completed intact
        # no new connections once draining; the daemon exits when the last one ends
        code = daemon.process.wait(15)
        assert code == 0 and time.monotonic() - started < 10
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=2).close()


# -- kernel netem in a private network namespace (when the kernel has it) -------------------------

NETEM_SCRIPT = """
import os, pathlib, sys, tempfile
from inetkit.clients.tftp import get_file
from inetkit.testing.running import running_service
root = pathlib.Path(tempfile.mkdtemp())
data = os.urandom(100_000)
(root / "f.bin").write_bytes(data)
with running_service("tftp", proto="udp", options={"root": str(root)}) as svc:
    get_file(svc.address[0], svc.address[1], "f.bin", str(root / "got.bin"), blksize=1428, windowsize=4)
sys.exit(0 if (root / "got.bin").read_bytes() == data else 3)
"""


def test_tftp_under_netem(tmp_path: Path) -> None:
    """TFTP in a private network namespace whose loopback drops, duplicates,
    reorders and delays (Linux netem).  Skipped where netem or namespaces are
    not available (no sch_netem module, no CAP_SYS_ADMIN)."""
    setup = "ip link set lo up && tc qdisc add dev lo root netem loss 5% duplicate 5% delay 2ms reorder 10%"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", setup], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"netem in a network namespace not available: {probe.stderr.decode(errors='replace').strip()}")
    script = tmp_path / "netem_tftp.py"
    script.write_text(NETEM_SCRIPT)
    done = subprocess.run(["unshare", "-n", "sh", "-c", f"{setup} && exec {sys.executable} {script}"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]


def test_tftp_late_reply_is_not_an_rtt_sample() -> None:
    """Found by the lossy relay: the server's OACK is lost, the server resends
    it after its own 1 s timer, and it reaches the client just after the
    client's (equal) deadline, before the client retransmitted its WRQ.  Taken
    as a 1 s RTT sample, it pinned the client's RTO at the 4 s ceiling for the
    whole upload (22 s instead of 1.5 s for 120 KB at 5 % loss, and the server
    gave up when one retransmission was lost)."""
    from inetkit.proto.tftp import options as O
    from inetkit.proto.tftp import packets as P
    from inetkit.proto.tftp import session as S

    class Blocks:
        def block(self, index: int) -> bytes:
            return b"x" * 1428

        def release(self, below: int) -> None:
            pass

    requested = {"blksize": "1428"}
    sender = S.Sender(Blocks(), O.Settings(), 0.0, request=P.encode_request(P.WRQ, "f", "octet", requested),
                      requested=requested)
    assert sender.start(0.0)[0][:2] == b"\x00\x02"
    out = sender.receive(P.encode_oack(requested), 1.005)
    assert out and P.decode(out[0]) == P.Data(1, b"x" * 1428)
    assert sender.rto <= 1.0, sender.rto
    # a genuine sample afterwards still drives the RTO down to the path's RTT
    sender.receive(P.encode_ack(1), 1.009)
    assert sender.rto < 0.1
