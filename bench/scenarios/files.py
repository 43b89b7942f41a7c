"""TCP file transfer: one large file over loopback into a file on disk.

Subjects: ``inetkit get`` from the ``files`` service (FX1: size and digests
first, ``sendfile`` on the server, ``splice`` on the client, which verifies
the digest over the whole file as it writes: SHA-256 by default), the same
with ``--check blake3`` (the client verifies BLAKE3 instead), netcat-openbsd
(``nc -N -l`` serving the file, ``nc -d`` writing it), ``python -m
http.server`` + curl, and iperf3 (memory to memory, the loopback limit).
Every copy is checked with SHA-256 afterwards (not timed).  inetkit's daemon
RSS is sampled during its transfers, and every subject's CPU (client and
server together) per GiB.  The targets are computed for the default
``inetkit get``.

Targets (issue 6): inetkit >= 1x netcat, >= 1.2x http.server + curl, >= 0.5x
iperf3; daemon RSS during the transfer < 64 MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness import Context, alternate, say
from bench.peers import PeerMissing, require
from bench.procs import free_port, popen, stop_process, tree_cpu
from bench.scenarios import NotAvailable, service_available
from bench.servers import REPO, _env, start_inetkit
from bench.stats import fmt_number

NAME = "files"
BLAKE3_LABEL = "inetkit get --check blake3"
MIB = 1 << 20
GIB = 1 << 30
TIMEOUT = 120.0


def listening(port: int) -> bool:
    """True when some socket listens on 127.0.0.1:port (read from /proc, so
    a one-shot server such as ``nc -l`` is not consumed by a probe)."""
    needle = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == needle and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port}")
        time.sleep(0.01)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(size // MIB):
            # vary each MiB so nothing along the way can deduplicate it
            f.write(i.to_bytes(8, "little") + block[8:])


class RssSampler:
    """Peak RSS of a process tree, sampled every 20 ms in a thread."""

    def __init__(self, server) -> None:  # type: ignore[no-untyped-def]
        self.server, self.peak, self.stop = server, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            self.stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def run(ctx: Context) -> None:
    if not service_available("files"):
        raise NotAvailable("service missing (inetkit.services.files)")
    size = ctx.pick(128, 1024) * MIB
    runs = ctx.runs(2, 3)
    # tmpfs when there is one: the copies land in a file, but the disk's
    # write-back (which throttles whichever subject runs after a big write)
    # stays out of the comparison
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 3 * size else None
    work = Path(tempfile.mkdtemp(prefix="inetkit-bench-files-", dir=base))
    root = work / "root"
    root.mkdir()
    source = root / "big.bin"
    make_file(source, size)
    digest = sha256(source)
    rate = ctx.measurement(NAME, f"{size // MIB} MiB into a file", "MB/s", reference="nc (netcat-openbsd)")
    cpu = ctx.measurement(NAME, "CPU per GiB, client + server", "s", reference="nc (netcat-openbsd)",
                          higher_is_better=False)
    rss_peaks: list[int] = []
    try:
        with ExitStack() as stack:
            server = start_inetkit("files", {"files": {"proto": "tcp", "handler": "files",
                                                       "options": {"root": str(root)}}})
            stack.callback(server.stop)
            port = server.extra_ports["files/tcp"]
            http_port = free_port()
            http = popen([sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1",
                          "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(stop_process, http)
            wait_listening(http_port, http)

            # Each subject returns (seconds, CPU seconds): the time of its client
            # command alone (a server that must be started per copy, nc's, is
            # listening before the clock starts), and the CPU of client and server
            # together (children's rusage; the servers' /proc/PID/stat).

            def inetkit_get(out: Path, *extra: str) -> tuple[float, float]:
                before = server.cpu()
                with RssSampler(server) as sampler:
                    elapsed, cpu = _timed_run([sys.executable, "-m", "inetkit.cli.main", "get", "127.0.0.1", str(port),
                                               source.name, "-o", str(out), "-q", *extra])
                rss_peaks.append(sampler.peak)
                return elapsed, cpu + server.cpu() - before

            def inetkit_get_blake3(out: Path) -> tuple[float, float]:
                return inetkit_get(out, "--check", "blake3")

            def nc_get(out: Path) -> tuple[float, float]:
                nc = require("nc")
                nc_port = free_port()
                before = _children_cpu()
                with open(source, "rb") as src:
                    serving = popen([nc, "-N", "-l", "127.0.0.1", str(nc_port)], stdin=src,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_listening(nc_port, serving)
                    with open(out, "wb") as dst:
                        elapsed, _ = _timed_run([nc, "-d", "127.0.0.1", str(nc_port)], stdout=dst)
                finally:
                    stop_process(serving)  # reaped: its CPU is in the children's rusage now
                return elapsed, _children_cpu() - before

            def curl_get(out: Path) -> tuple[float, float]:
                before = tree_cpu(http.pid)
                elapsed, cpu = _timed_run([require("curl"), "-s", "-S", "-o", str(out),
                                           f"http://127.0.0.1:{http_port}/{source.name}"])
                return elapsed, cpu + tree_cpu(http.pid) - before

            subjects = {"inetkit get (files)": inetkit_get, BLAKE3_LABEL: inetkit_get_blake3,
                        "nc (netcat-openbsd)": nc_get, "http.server + curl": curl_get}
            available = {}
            for label, fn in subjects.items():
                try:
                    if not label.startswith("inetkit"):
                        require("nc" if label.startswith("nc") else "curl")
                    available[label] = fn
                except PeerMissing as exc:
                    ctx.note(NAME, f"{label}: not measured ({exc}).")
            # warm up: the page cache holds the file, inetkit's digest of it is known
            for label, fn in available.items():
                out = work / "warm.bin"
                fn(out)
                out.unlink(missing_ok=True)

            def measure(_run: int, label: str) -> None:
                out = work / "out.bin"
                try:
                    elapsed, cpu_used = available[label](out)
                    if sha256(out) != digest:
                        ctx.note(NAME, f"{label}: a copy arrived damaged (not counted).")
                        return
                    rate.add(label, size / elapsed / 1e6)
                    cpu.add(label, cpu_used / (size / GIB))
                    say(f"  {label}: {size / elapsed / 1e6:.0f} MB/s, {cpu_used:.2f} s CPU")
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    ctx.note(NAME, f"{label}: a transfer failed: {exc}")
                finally:
                    out.unlink(missing_ok=True)

            labels = list(available)
            if shutil.which("iperf3"):
                labels.append("iperf3 (memory to memory)")
                available["iperf3 (memory to memory)"] = None  # type: ignore[assignment]

                def measure_any(r: int, label: str) -> None:
                    if label.startswith("iperf3"):
                        value = _iperf3(size)
                        rate.add(label, value)
                        say(f"  {label}: {value:.0f} MB/s" if value else "  iperf3 failed")
                    else:
                        measure(r, label)
            else:
                ctx.note(NAME, "iperf3: not measured (iperf3 missing: apt-get install iperf3).")
                measure_any = measure  # type: ignore[assignment]
            alternate(ctx, labels, runs, measure_any, NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ik = "inetkit get (files)"
    ctx.target(6, f"{size // MIB} MiB download into a file: inetkit vs nc", ">=", 1.0,
               rate.ratio_to(ik, "nc (netcat-openbsd)"), note="nc missing",
               detail=f"{fmt_number(_med(rate, ik))} vs {fmt_number(_med(rate, 'nc (netcat-openbsd)'))} MB/s")
    ctx.target(6, "inetkit vs python -m http.server + curl", ">=", 1.2, rate.ratio_to(ik, "http.server + curl"),
               note="curl missing",
               detail=f"{fmt_number(_med(rate, ik))} vs {fmt_number(_med(rate, 'http.server + curl'))} MB/s")
    ctx.target(6, "inetkit vs iperf3 (the loopback limit)", ">=", 0.5, rate.ratio_to(ik, "iperf3 (memory to memory)"),
               note="iperf3 missing",
               detail=f"{fmt_number(_med(rate, ik))} vs {fmt_number(_med(rate, 'iperf3 (memory to memory)'))} MB/s")
    ctx.target(6, "files daemon RSS during the transfer", "<", 64.0,
               max(rss_peaks) / MIB if rss_peaks else None, unit="MiB", detail="peak of 20 ms samples")
    ctx.note(NAME, f"{size // MIB} MiB file (page-cached after a warm-up copy), copied into a file in "
                   f"{'tmpfs (/dev/shm)' if base else 'the temporary directory'}; {runs} runs, alternated; unpinned. Times are whole client commands (`inetkit get` "
                   "includes its interpreter start and its own end-to-end check of the whole file: SHA-256 by "
                   "default, BLAKE3 with `--check blake3`; nc and curl check nothing; nc's one-shot listener "
                   "is started before the clock), every copy then checked by the bench with SHA-256 (not timed). "
                   "CPU per GiB: client command plus server (inetkit's daemon, the serving nc, http.server), "
                   "from rusage and /proc; it is steadier than the rates on a busy machine. iperf3: one stream, "
                   "`-n SIZE`, memory to memory. Targets: the default `inetkit get`.")


def _med(m, label):  # type: ignore[no-untyped-def]
    s = m.summary(label)
    return s.median if s else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_run(argv: list[str], stdout: Any = subprocess.DEVNULL) -> tuple[float, float]:
    """Run a client command; (its wall time, its CPU time)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    out = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=TIMEOUT,
                         env=_env(), cwd=REPO)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} exited {out.returncode}: {out.stderr.decode(errors='replace')[-200:]}")
    return elapsed, _children_cpu() - cpu_before


def _iperf3(size: int) -> float | None:
    """One iperf3 stream of ``size`` bytes on loopback; MB/s received."""
    iperf3 = shutil.which("iperf3")
    assert iperf3
    port = free_port()
    server = popen([iperf3, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        out = subprocess.run([iperf3, "-c", "127.0.0.1", "-p", str(port), "-n", str(size), "-J"],
                             capture_output=True, timeout=TIMEOUT)
        data = json.loads(out.stdout or b"{}")
        bps = data.get("end", {}).get("sum_received", {}).get("bits_per_second")
        return bps / 8 / 1e6 if bps else None
    except (subprocess.SubprocessError, ValueError):
        return None
    finally:
        stop_process(server)
