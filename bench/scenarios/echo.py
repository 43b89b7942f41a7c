"""Echo round trips: 64-byte messages, 100 concurrent connections, closed loop
(each connection sends, waits for its 64 bytes back, sends again).

Subjects: inetkit's internal echo under the async model (one process, and
``workers = 2``), a bare uvloop Protocol echo server (``bench/refservers.py``),
xinetd's internal echo (``type = INTERNAL``, it forks one process per
connection), socat fork with PIPE.  Targets (issue 2): async >= 2x xinetd's
round trips/s; async server CPU per round trip <= 1.2x the bare uvloop
server's.
"""

from __future__ import annotations

from contextlib import ExitStack

from bench.cload import describe, fast_load
from bench.harness import Context, alternate, say, start_all
from bench.servers import start_inetkit, start_reference, start_socat, start_xinetd
from bench.stats import fmt_number, ratio

NAME = "echo"
CONNS = 100
SIZE = 64
PROCESSES = 2  # one load process per core


def run(ctx: Context) -> None:
    duration = ctx.pick(1.0, 3.0)
    runs = ctx.runs(2, 5)
    echo = {"proto": "tcp", "handler": "echo", "model": "async"}
    starters = {
        "inetkit async": lambda: start_inetkit("echo-async", {"echo": echo}),
        "inetkit async workers=2": lambda: start_inetkit("echo-async-w2", {"echo": {**echo, "workers": 2}}),
        "bare uvloop": lambda: start_reference("bare uvloop", "echo-uvloop"),
        "xinetd internal": lambda: start_xinetd("xinetd", "echo-stream"),
        "socat fork": lambda: start_socat("socat", "PIPE"),
    }
    rate = ctx.measurement(NAME, "round trips/s", "rt/s", reference="xinetd internal")
    cpu = ctx.measurement(NAME, "server CPU per round trip", "µs", reference="bare uvloop", higher_is_better=False)
    client = ctx.measurement(NAME, "client CPU per round trip", "µs")
    with ExitStack() as stack:
        servers = start_all(stack, ctx, NAME, starters)
        params = {"host": "127.0.0.1", "conns": CONNS // PROCESSES, "size": SIZE}
        for label, server in servers.items():  # warm up: connections, caches, fork paths
            fast_load("echo", {**params, "port": server.port}, PROCESSES, 0.3, server)

        def measure(_run: int, label: str) -> None:
            server = servers[label]
            r = fast_load("echo", {**params, "port": server.port}, PROCESSES, duration, server)
            rate.add(label, r.rate)
            cpu.add(label, r.server_cpu * 1e6 / r.ops if r.ops else None)
            client.add(label, r.client_cpu * 1e6 / r.ops if r.ops else None)
            if r.errors:
                ctx.note(NAME, f"{label}: {r.errors} connection errors in one run.")
            say(f"  {label}: {r.rate:.0f} rt/s, server {r.server_cpu * 1e6 / max(r.ops, 1):.2f} µs/rt")

        alternate(ctx, list(servers), runs, measure, NAME)
    a = rate.summary("inetkit async")
    ctx.target(2, "echo 64 B, 100 conns: async round trips/s vs xinetd internal echo", ">=", 2.0,
               rate.ratio_to("inetkit async", "xinetd internal"),
               detail=f"{fmt_number(a.median) if a else '–'} rt/s vs "
                      f"{fmt_number(rate.summary('xinetd internal').median) if rate.summary('xinetd internal') else '–'}",
               note="xinetd missing")
    ca, cu = cpu.summary("inetkit async"), cpu.summary("bare uvloop")
    ctx.target(2, "echo: async server CPU per round trip vs bare uvloop Protocol server", "<=", 1.2,
               ratio(ca.median if ca else None, cu.median if cu else None),
               detail=f"{fmt_number(ca.median) if ca else '–'} µs vs {fmt_number(cu.median) if cu else '–'} µs")
    ctx.note(NAME, f"{CONNS} connections driven by {describe()}, {SIZE}-byte round trips, "
                   f"{duration:g} s per run, {runs} runs per subject, subjects alternated run by run; "
                   "client and server unpinned (they share the 2 cores). Server CPU = utime+stime of the "
                   "server's process tree (children included) over the run; client CPU likewise for the "
                   "load generator: when client CPU per round trip is as high as the server's, the client "
                   "is what limits the rate, and the server CPU column is the fair comparison.")
