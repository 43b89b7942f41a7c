"""TFTP: inetkit's server and client against tftpd-hpa (in.tftpd), atftpd,
curl and atftp, on one file, every transfer checked byte for byte (SHA-256,
not timed).

- Lock-step, curl downloading at blksize 512 and 1468 from each server.
  These are round-trip bound, so client and server are pinned to the same
  CPU (a wake-up on the other CPU costs ~60 µs on this VM and would dominate).
  Target (issue 5): inetkit server >= 1x in.tftpd.
- blksize 65464: inetkit client + server with windowsize 16 vs in.tftpd + curl
  (tftpd-hpa has no windowsize); inetkit server + curl beside it.  Target >= 1x.
- Windowed, blksize 1468, windowsize 16 and 64, get and put: inetkit client +
  server vs atftp + atftpd.  Target >= 1x each.
- Loss: 5% of datagrams dropped each way by ``inetkit.testing.lossy``'s relay
  (in the bench process), blksize 1468, windowsize 16, loss-free through the
  same relay as the baseline.  Target: inetkit keeps >= 50%; atftp + atftpd
  reported beside it.

inetkit's client runs as ``python -m bench.tftprun`` and is timed inside
(request to last block, the interpreter start left out); C clients are timed
as whole processes (their start is ~1 ms).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from bench.harness import Context, alternate
from bench.peers import PeerMissing, require
from bench.procs import ALL_CPUS, Server, free_port, popen, set_affinity, stop_process
from bench.scenarios import NotAvailable, service_available
from bench.servers import REPO, _env, start_inetkit
from bench.stats import fmt_number, ratio

NAME = "tftp"
MIB = 1 << 20
TRANSFER_TIMEOUT = 120.0


def udp_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """A TFTP server is ready when a read request for a missing file gets an
    answer (an ERROR packet): asked every 50 ms, bounded."""
    request = b"\x00\x01bench-readiness-probe\x00octet\x00"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            s.sendto(request, ("127.0.0.1", port))
            try:
                s.recvfrom(2048)
                return
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise TimeoutError(f"TFTP server on port {port} not answering")


def start_udp_peer(label: str, argv: list[str], port: int) -> Server:
    proc = popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        udp_ready(port, proc)
    except Exception:
        stop_process(proc)
        raise
    return Server(label, proc, port)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Transfers:
    """Runs one transfer per call and returns MiB/s (None on failure, noted)."""

    def __init__(self, ctx: Context, root: Path, work: Path, source: Path, size: int) -> None:
        self.ctx, self.root, self.work, self.source, self.size = ctx, root, work, source, size
        self.digest = sha256(source)
        self.count = 0

    def _check(self, label: str, path: Path) -> bool:
        if not path.exists() or path.stat().st_size != self.size or sha256(path) != self.digest:
            self.ctx.note(NAME, f"{label}: a transfer arrived damaged or incomplete (not counted).")
            return False
        return True

    def _run(self, argv: list[str], pin: bool, timeout: float) -> tuple[float | None, str]:
        if pin:
            argv = ["taskset", "-c", "0", *argv]
        start = time.perf_counter()
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 timeout=timeout, env=_env(), cwd=REPO)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:g} s"
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            return None, (out.stderr or out.stdout).decode(errors="replace").strip()[-200:]
        return elapsed, out.stdout.decode(errors="replace")

    def get(self, label: str, client: str, port: int, blksize: int, windowsize: int = 1, *,
            pin: bool = False, timeout: float = TRANSFER_TIMEOUT) -> float | None:
        self.count += 1
        out = self.work / f"get-{self.count}.bin"
        name = self.source.name
        if client == "curl":
            argv = [require("curl"), "-s", "-S", "-o", str(out), "--tftp-blksize", str(blksize),
                    f"tftp://127.0.0.1:{port}/{name}"]
        elif client == "atftp":
            argv = [require("atftp"), "--get", "-r", name, "-l", str(out), "--option", f"blksize {blksize}",
                    *(["--option", f"windowsize {windowsize}"] if windowsize > 1 else []),
                    "--option", "timeout 1", "127.0.0.1", str(port)]
        else:
            argv = [sys.executable, "-m", "bench.tftprun", "get", "127.0.0.1", str(port), name, str(out),
                    str(blksize), str(windowsize)]
        elapsed, text = self._run(argv, pin, timeout)
        try:
            if elapsed is None:
                self.ctx.note(NAME, f"{label}: a transfer failed: {text}")
                return None
            if client == "inetkit":
                elapsed = json.loads(text.strip().splitlines()[-1])["elapsed"]
            return self.size / MIB / elapsed if self._check(label, out) else None
        finally:
            out.unlink(missing_ok=True)

    def put(self, label: str, client: str, port: int, blksize: int, windowsize: int = 1,
            timeout: float = TRANSFER_TIMEOUT) -> float | None:
        self.count += 1
        remote = f"put-{self.count}.bin"
        target = self.root / remote
        if client == "atftp":
            argv = [require("atftp"), "--put", "-r", remote, "-l", str(self.source), "--option",
                    f"blksize {blksize}", *(["--option", f"windowsize {windowsize}"] if windowsize > 1 else []),
                    "--option", "timeout 1", "127.0.0.1", str(port)]
        else:
            argv = [sys.executable, "-m", "bench.tftprun", "put", "127.0.0.1", str(port), remote, str(self.source),
                    str(blksize), str(windowsize)]
        elapsed, text = self._run(argv, False, timeout)
        try:
            if elapsed is None:
                self.ctx.note(NAME, f"{label}: a transfer failed: {text}")
                return None
            if client == "inetkit":
                elapsed = json.loads(text.strip().splitlines()[-1])["elapsed"]
            time.sleep(0.05)  # the server renames the upload into place after the last ACK
            return self.size / MIB / elapsed if self._check(label, target) else None
        finally:
            target.unlink(missing_ok=True)


def run(ctx: Context) -> None:
    if not service_available("tftp"):
        raise NotAvailable("service missing (inetkit.services.tftp)")
    size = ctx.pick(4, 48) * MIB
    runs = ctx.runs(2, 5)
    work = Path(tempfile.mkdtemp(prefix="inetkit-bench-tftp-"))
    root = work / "root"
    root.mkdir()
    os.chmod(root, 0o777)
    source = root / "payload.bin"
    with open(source, "wb") as f:
        f.write(os.urandom(size))
    os.chmod(source, 0o644)
    t = Transfers(ctx, root, work, source, size)
    try:
        with ExitStack() as stack:
            servers: dict[str, Server] = {}

            def add(label: str, start: Callable[[], Server]) -> None:
                try:
                    server = start()
                except PeerMissing as exc:
                    ctx.note(NAME, f"{label}: not measured ({exc}).")
                    return
                stack.callback(server.stop)
                servers[label] = server

            add("inetkit", lambda: _inetkit(root))
            add("in.tftpd", lambda: _hpa(root))
            add("atftpd", lambda: _atftpd(root))
            _lockstep(ctx, t, servers, runs)
            _big_blocks(ctx, t, servers, runs)
            _windowed(ctx, t, servers, runs)
            _loss(ctx, t, servers, ctx.runs(1, 3), ctx.pick(2, 8) * MIB)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctx.note(NAME, f"File: {size // MIB} MiB of random bytes, every transfer verified with SHA-256; "
                   f"{runs} runs per subject, alternated.")


def _inetkit(root: Path) -> Server:
    server = start_inetkit("tftp", {"tftp": {"proto": "udp", "options": {
        "root": str(root), "allow_create": True, "allow_overwrite": True, "max_size": 0}}})
    server.port = server.extra_ports["tftp/udp"]
    return server


def _hpa(root: Path) -> Server:
    port = free_port("udp")
    return start_udp_peer("in.tftpd", [require("in.tftpd"), "-L", "-a", f"127.0.0.1:{port}", "-s", str(root)], port)


def _atftpd(root: Path) -> Server:
    port = free_port("udp")
    return start_udp_peer("atftpd", [require("atftpd"), "--daemon", "--no-fork", "--port", str(port),
                                     "--bind-address", "127.0.0.1", "--logfile", "/dev/null",
                                     "--user", "root.root", str(root)], port)


def _pinned(servers: dict[str, Server], pin: bool) -> None:
    for server in servers.values():
        set_affinity(server.pid, {0} if pin else ALL_CPUS)


def _lockstep(ctx: Context, t: Transfers, servers: dict[str, Server], runs: int) -> None:
    if "inetkit" not in servers:
        return
    _pinned(servers, True)
    try:
        for blksize in (512, 1468):
            m = ctx.measurement(NAME, f"curl get, blksize {blksize}, pinned to one CPU", "MiB/s",
                                reference="in.tftpd")
            labels = [s for s in ("inetkit", "in.tftpd", "atftpd") if s in servers]
            alternate(ctx, labels, runs,
                      lambda _r, s: m.add(s, t.get(s, "curl", servers[s].port, blksize, pin=True)),
                      f"{NAME} curl {blksize}")
            ctx.target(5, f"curl get at blksize {blksize}: inetkit server vs in.tftpd", ">=", 1.0,
                       m.ratio_to("inetkit", "in.tftpd"), detail=_detail(m, "inetkit", "in.tftpd"),
                       note="in.tftpd missing")
    finally:
        _pinned(servers, False)


def _big_blocks(ctx: Context, t: Transfers, servers: dict[str, Server], runs: int) -> None:
    if "inetkit" not in servers:
        return
    m = ctx.measurement(NAME, "get, blksize 65464", "MiB/s", reference="in.tftpd + curl")
    subjects: dict[str, Callable[[], float | None]] = {
        "inetkit client+server, windowsize 16": lambda: t.get("inetkit ws16", "inetkit", servers["inetkit"].port,
                                                               65464, 16),
        "inetkit server + curl": lambda: t.get("inetkit + curl", "curl", servers["inetkit"].port, 65464),
    }
    if "in.tftpd" in servers:
        subjects["in.tftpd + curl"] = lambda: t.get("in.tftpd + curl", "curl", servers["in.tftpd"].port, 65464)
    alternate(ctx, list(subjects), runs, lambda _r, s: m.add(s, subjects[s]()), f"{NAME} 65464")
    ctx.target(5, "blksize 65464: inetkit client+server (windowsize 16) vs in.tftpd + curl", ">=", 1.0,
               m.ratio_to("inetkit client+server, windowsize 16", "in.tftpd + curl"),
               detail=_detail(m, "inetkit client+server, windowsize 16", "in.tftpd + curl"), note="in.tftpd missing")


def _windowed(ctx: Context, t: Transfers, servers: dict[str, Server], runs: int) -> None:
    if "inetkit" not in servers:
        return
    for windowsize in (16, 64):
        for op in ("get", "put"):
            m = ctx.measurement(NAME, f"{op}, blksize 1468, windowsize {windowsize}", "MiB/s",
                                reference="atftp + atftpd")
            subjects: dict[str, Callable[[], float | None]] = {
                "inetkit client+server": lambda op=op, w=windowsize: getattr(t, op)(
                    "inetkit windowed", "inetkit", servers["inetkit"].port, 1468, w),
            }
            if "atftpd" in servers:
                subjects["atftp + atftpd"] = lambda op=op, w=windowsize: getattr(t, op)(
                    "atftp + atftpd", "atftp", servers["atftpd"].port, 1468, w)
            alternate(ctx, list(subjects), runs, lambda _r, s: m.add(s, subjects[s]()), f"{NAME} {op} ws{windowsize}")
            ctx.target(5, f"{op} at blksize 1468, windowsize {windowsize}: inetkit client+server vs atftp + atftpd",
                       ">=", 1.0, m.ratio_to("inetkit client+server", "atftp + atftpd"),
                       detail=_detail(m, "inetkit client+server", "atftp + atftpd"), note="atftp/atftpd missing")


def _loss(ctx: Context, t: Transfers, servers: dict[str, Server], runs: int, size: int) -> None:
    if "inetkit" not in servers:
        return
    try:
        from inetkit.testing.lossy import Impairment, LossyRelay
    except ImportError:
        ctx.note(NAME, "loss sweep not measured: inetkit.testing.lossy missing.")
        return
    small = t.root / "loss.bin"
    with open(small, "wb") as f:
        f.write(os.urandom(size))
    lt = Transfers(ctx, t.root, t.work, small, size)
    m = ctx.measurement(NAME, "get through the relay, blksize 1468, windowsize 16", "MiB/s")
    pairs = {"inetkit": "inetkit"}
    if "atftpd" in servers:
        pairs["atftpd"] = "atftp"
    subjects = [f"{client} + {server}, {loss}" for server, client in pairs.items() for loss in ("no loss", "5% loss")]
    loss_timeout = ctx.pick(8.0, 20.0)

    def measure(_r: int, subject: str) -> None:
        pair, loss = subject.rsplit(", ", 1)
        client, server = pair.split(" + ")
        drop = 0.05 if loss == "5% loss" else 0.0
        with LossyRelay(("127.0.0.1", servers[server].port), to_server=Impairment(drop=drop),
                        to_client=Impairment(drop=drop), seed=_r + 1) as relay:
            m.add(subject, lt.get(subject, client, relay.address[1], 1468, 16, timeout=loss_timeout))

    alternate(ctx, subjects, runs, measure, f"{NAME} loss")
    kept = ratio(_median(m, "inetkit + inetkit, 5% loss"), _median(m, "inetkit + inetkit, no loss"))
    ctx.target(5, "5% loss each way: inetkit windowed transfer keeps of its loss-free throughput", ">=", 0.5, kept,
               detail=f"atftp + atftpd keeps {fmt_number(ratio(_median(m, 'atftp + atftpd, 5% loss'), _median(m, 'atftp + atftpd, no loss')))}x")
    ctx.note(NAME, f"Loss sweep: {size // MIB} MiB file through the Python relay (which caps the loss-free rate "
                   "too), seeded drops, same seeds for both pairs; a transfer that does not finish within "
                   f"{loss_timeout:g} s counts as failed.")
    small.unlink(missing_ok=True)


def _median(m, subject):  # type: ignore[no-untyped-def]
    s = m.summary(subject)
    return s.median if s else None


def _detail(m, a: str, b: str) -> str:  # type: ignore[no-untyped-def]
    return f"{fmt_number(_median(m, a))} vs {fmt_number(_median(m, b))} MiB/s"
