"""Idle connections: 10,000 connections held open on inetkit's async echo
service (and on the bare uvloop echo server, for reference).

Per run, on a freshly started server: new clients' echo latency (connect,
one 64-byte round trip, close) is probed; 10,000 connections are opened and
each proven live by one echoed byte; the server's RSS growth per connection
is read from /proc; new clients are probed again while the 10,000 are held.
Targets (issue 3): RSS growth <= 10 KiB per connection; a new client's echo
under 10 ms at the 99th percentile while they are held.
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

from bench.harness import Context, alternate, say
from bench.procs import Server
from bench.servers import start_inetkit, start_reference
from bench.stats import fmt_number, percentile

NAME = "idle"
HELD = 10_000
TIMEOUT = 10.0


def probe(port: int, count: int) -> list[float]:
    """``count`` sequential new clients: connect, 64-byte round trip, close."""
    payload = b"p" * 64
    out = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(len(payload) - len(got))
                if not chunk:
                    raise ConnectionError("echo closed early")
                got += chunk
        out.append(time.perf_counter() - start)
    return out


def hold(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections and prove each is served (one echoed byte)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        for s in socks:
            s.sendall(b"i")
        for s in socks:
            if s.recv(1) != b"i":
                raise ConnectionError("an idle connection was not echoed")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def settle_rss(server: Server, timeout: float = 5.0) -> int:
    """The server's RSS once it stops changing (bounded wait)."""
    last = server.rss()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = server.rss()
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def run(ctx: Context) -> None:
    runs = ctx.runs(1, 3)
    probes = ctx.pick(300, 1000)
    starters = {
        "inetkit async echo": lambda: start_inetkit("idle-echo", {"echo": {"proto": "tcp", "handler": "echo",
                                                                          "model": "async"}}),
        "bare uvloop echo": lambda: start_reference("bare uvloop", "echo-uvloop"),
    }
    growth = ctx.measurement(NAME, f"RSS growth per held connection ({HELD:,} held)", "KiB",
                             reference="bare uvloop echo", higher_is_better=False)
    p99_idle = ctx.measurement(NAME, "new client echo p99, nothing held", "ms", higher_is_better=False)
    p99_held = ctx.measurement(NAME, f"new client echo p99, {HELD:,} held", "ms", higher_is_better=False)

    def measure(_run: int, label: str) -> None:
        with ExitStack() as stack:
            server = starters[label]()
            stack.callback(server.stop)
            probe(server.port, 50)  # warm up
            before = probe(server.port, probes)
            rss0 = settle_rss(server)
            socks = hold(server.port, HELD)
            for s in socks:
                stack.callback(s.close)
            rss1 = settle_rss(server)
            during = probe(server.port, probes)
            growth.add(label, (rss1 - rss0) / HELD / 1024)
            p99_idle.add(label, percentile(before, 99) * 1000)
            p99_held.add(label, percentile(during, 99) * 1000)
            say(f"  {label}: {(rss1 - rss0) / HELD / 1024:.2f} KiB/conn, p99 {percentile(during, 99) * 1000:.2f} ms "
                f"held vs {percentile(before, 99) * 1000:.2f} ms")

    alternate(ctx, list(starters), runs, measure, NAME)
    g, p = growth.summary("inetkit async echo"), p99_held.summary("inetkit async echo")
    ctx.target(3, f"{HELD:,} idle connections: daemon RSS growth per connection", "<=", 10.0,
               g.median if g else None, unit="KiB")
    ctx.target(3, "new client echo latency p99 while they are held", "<", 10.0, p.median if p else None, unit="ms",
               detail=f"{probes} sequential new clients (connect + 64 B round trip + close)")
    ctx.note(NAME, f"{HELD:,} connections opened by the bench process, each proven live by one echoed byte; "
                   "RSS = VmRSS of the server's process tree, settled, on a fresh server per run; "
                   f"{probes} sequential probe clients before and while held; {runs} runs, alternated; unpinned. "
                   f"inetkit median {fmt_number(g.median if g else None)} KiB per connection.")
