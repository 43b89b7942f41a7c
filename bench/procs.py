"""Processes the bench starts: launch, wait until a port answers, read CPU
and memory from /proc, stop by PID.

CPU of a server is the sum over its process tree (the server, and every
live descendant) of /proc/PID/stat fields 14-17: utime, stime, cutime,
cstime.  Children that already exited and were reaped show up in their
parent's cutime/cstime, live ones (xinetd's forked echo children, the fork
model's worker and its children) are read directly, so the delta between two
samples is the CPU the whole server spent in between.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
STOP_TIMEOUT = 10.0


def free_port(proto: str = "tcp") -> int:
    """A port the OS says is free now (for peers that cannot bind port 0 and
    report it); the small race with other programs is acceptable in a bench."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces: split after its ')'
    rest = raw[raw.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_cpu(pid: int) -> float:
    """Seconds of CPU used by ``pid``'s tree: utime+stime+cutime+cstime of each."""
    ticks = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is None:
            continue
        # fields 14..17 of /proc/PID/stat are rest[11..14]
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid``'s tree (VmRSS, summed)."""
    total = 0
    for p in process_tree(pid):
        total += rss(p)
    return total


def rss(pid: int) -> int:
    """Resident bytes of one process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Return once a TCP connect to the port succeeds (bounded by ``timeout``).

    Used only for peers that do not announce readiness themselves.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0] if isinstance(proc.args, list) else proc.args} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


@dataclass
class Server:
    """A server process the bench started (inetkit, a peer or a reference)."""

    label: str
    proc: subprocess.Popen[Any]
    port: int
    extra_ports: dict[str, int] = field(default_factory=dict)
    cleanup: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return tree_cpu(self.pid)

    def rss(self) -> int:
        return tree_rss(self.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process we started (by its PID), SIGKILL if it lingers; then
    the same for any descendant it left behind (by their PIDs)."""
    leftovers = process_tree(proc.pid)[1:] if proc.poll() is None else []
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def popen(argv: Sequence[str], *, pin: str | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` (optionally under ``taskset -c PIN``), stdin closed."""
    argv = list(argv)
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(argv, **kwargs)


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid``'s process tree to ``cpus`` (children forked
    later inherit it): used to put client and server on one CPU for the
    lock-step comparisons, then to release them."""
    for p in process_tree(pid):
        try:
            tasks = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
        for tid in tasks:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


ALL_CPUS = set(range(os.cpu_count() or 1))
