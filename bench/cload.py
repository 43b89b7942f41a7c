"""Build and drive ``cload.c``, the C load generator (see its header comment).

``run_cload(kind, params, duration, server)`` mirrors ``load.run_load``: the
server's CPU is sampled right before the generator is released and right
after it reports, and the generator's own CPU is reported beside it.
``available()`` is False when no C compiler is installed; the scenarios then
fall back to the Python generators and say so in their notes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.load import MAX_OPS, SETUP_TIMEOUT, LoadResult

SOURCE = Path(__file__).with_name("cload.c")
_BINARY: Path | None = None
_FAILED = False


def binary() -> Path | None:
    """The compiled generator, built once per source version (None without cc)."""
    global _BINARY, _FAILED
    if _BINARY is not None or _FAILED:
        return _BINARY
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        _FAILED = True
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"inetkit-cload-{digest}"
    if not target.exists():
        partial = target.with_suffix(".tmp")
        result = subprocess.run([cc, "-O2", "-o", str(partial), str(SOURCE)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            _FAILED = True
            print(f"bench: cannot build cload.c, using the Python load generators:\n{result.stderr}")
            return None
        partial.rename(target)
    _BINARY = target
    return target


def available() -> bool:
    return binary() is not None


def run_cload(kind: str, params: dict[str, Any], duration: float, server: Any) -> LoadResult:
    """kind ``echo`` (params: host, port, conns, size) or ``connect``
    (params: host, port, conns = connections in flight, expect = bytes)."""
    exe = binary()
    if exe is None:
        raise RuntimeError("cload is not available")
    size = params["size"] if kind == "echo" else params.get("expect", 1)
    argv = [str(exe), kind, params["host"], str(params["port"]), str(params["conns"]), str(size),
            str(duration), str(params.get("max_ops", MAX_OPS))]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"cload did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        cpu0 = server.cpu()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        report = proc.stdout.readline()
        cpu1 = server.cpu()
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(SETUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    fields = dict(item.split("=", 1) for item in report.split())
    if "ops" not in fields:
        raise RuntimeError(f"cload reported {report!r}")
    return LoadResult(
        ops=int(fields["ops"]), errors=int(fields["errors"]), elapsed=float(fields["elapsed"]),
        client_cpu=float(fields["cpu"]), server_cpu=cpu1 - cpu0,
    )


def fast_load(kind: str, params: dict[str, Any], processes: int, duration: float, server: Any) -> LoadResult:
    """The C generator when it builds (one process, all connections in one
    epoll loop), else ``processes`` Python load processes.  ``echo`` params
    give connections per process; ``connect`` runs ``processes`` in flight."""
    from bench.load import run_load

    if not available():
        return run_load(kind, params, processes, duration, server)
    if kind == "echo":
        return run_cload("echo", {**params, "conns": params["conns"] * processes}, duration, server)
    return run_cload("connect", {**params, "conns": processes}, duration, server)


def describe() -> str:
    return ("the C load generator (bench/cload.c, one epoll process)" if available()
            else "Python load processes (no C compiler: bench/cload.c not built)")
