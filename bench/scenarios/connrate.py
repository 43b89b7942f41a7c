"""Connection rate: daytime over short connections (connect, read the line
to EOF, close), 10 clients back to back.

Subjects: inetkit's internal daytime under async (connection log off, and on:
the log written to a file, as a daemon's is), fork and exec (``/bin/date``,
like socat's), xinetd's internal daytime, a bare uvloop daytime Protocol
server, ``socketserver.ForkingTCPServer`` and ``socat fork`` + ``EXEC:date``.
Targets: issue 2, async server CPU per connection <= 1x xinetd's and fork
>= 2x ForkingTCPServer's connections/s; issue 3, per-connection logging
costs <= 5% of the connection rate.
"""

from __future__ import annotations

import shutil
import statistics
from contextlib import ExitStack
from typing import Any

from bench import logtoggle
from bench.cload import describe, fast_load
from bench.harness import Context, alternate, say, start_all
from bench.servers import start_inetkit, start_reference, start_socat, start_xinetd
from bench.stats import fmt_number, ratio

NAME = "connrate"
CLIENTS = 10


def run(ctx: Context) -> None:
    duration = ctx.pick(1.0, 3.0)
    runs = ctx.runs(2, 5)
    daytime = {"proto": "tcp", "handler": "daytime"}
    date = shutil.which("date") or "/bin/date"
    starters = {
        "inetkit async": lambda: start_inetkit("daytime-async", {"daytime": {**daytime, "model": "async"}}),
        "inetkit async +log": lambda: start_inetkit("daytime-async-log", {"daytime": {**daytime, "model": "async"}},
                                                    connection_log=True),
        "inetkit fork": lambda: start_inetkit("daytime-fork", {"daytime": {**daytime, "model": "fork"}}),
        "inetkit exec date": lambda: start_inetkit("daytime-exec", {"date": {"proto": "tcp", "model": "exec",
                                                                             "program": [date]}}),
        "xinetd internal": lambda: start_xinetd("xinetd", "daytime-stream"),
        "bare uvloop": lambda: start_reference("bare uvloop", "daytime-uvloop"),
        "ForkingTCPServer": lambda: start_reference("ForkingTCPServer", "daytime-forking"),
        "socat fork+exec date": lambda: start_socat("socat", f"EXEC:{date}"),
    }
    rate = ctx.measurement(NAME, "connections/s", "conn/s", reference="xinetd internal")
    cpu = ctx.measurement(NAME, "server CPU per connection", "µs", reference="xinetd internal", higher_is_better=False)
    client = ctx.measurement(NAME, "client CPU per connection", "µs")
    with ExitStack() as stack:
        servers = start_all(stack, ctx, NAME, starters)
        params = {"host": "127.0.0.1", "expect": 1}
        for label, server in servers.items():
            fast_load("connect", {**params, "port": server.port}, CLIENTS, 0.3, server)

        def measure(_run: int, label: str) -> None:
            server = servers[label]
            r = fast_load("connect", {**params, "port": server.port}, CLIENTS, duration, server)
            rate.add(label, r.rate)
            cpu.add(label, r.server_cpu * 1e6 / r.ops if r.ops else None)
            client.add(label, r.client_cpu * 1e6 / r.ops if r.ops else None)
            if r.errors:
                ctx.note(NAME, f"{label}: {r.errors} failed connections in one run.")
            say(f"  {label}: {r.rate:.0f} conn/s, server {r.server_cpu * 1e6 / max(r.ops, 1):.1f} µs/conn, "
                f"{r.errors} errors")

        alternate(ctx, list(servers), runs, measure, NAME)
        log_costs = _paired_log_costs(ctx, servers, params, duration)
    say(f"{NAME} log switched off and on inside one daemon")
    toggled = logtoggle.measure(ctx.runs(40, 240), 0.25)

    def med(m, label):  # type: ignore[no-untyped-def]
        s = m.summary(label)
        return s.median if s else None

    ctx.target(2, "daytime short conns: async server CPU per connection vs xinetd internal", "<=", 1.0,
               ratio(med(cpu, "inetkit async"), med(cpu, "xinetd internal")),
               detail=f"{fmt_number(med(cpu, 'inetkit async'))} µs vs {fmt_number(med(cpu, 'xinetd internal'))} µs")
    ctx.target(2, "daytime short conns: fork connections/s vs socketserver.ForkingTCPServer", ">=", 2.0,
               ratio(med(rate, "inetkit fork"), med(rate, "ForkingTCPServer")),
               detail=f"{fmt_number(med(rate, 'inetkit fork'))}/s vs {fmt_number(med(rate, 'ForkingTCPServer'))}/s")
    # The Python client needs as much CPU per connection as the server, so the
    # measured rates mostly show the client; what the log line costs the
    # daemon shows in its CPU per connection, i.e. in the rate it could sustain.
    on, off = med(rate, "inetkit async +log"), med(rate, "inetkit async")
    cpu_on, cpu_off = med(cpu, "inetkit async +log"), med(cpu, "inetkit async")
    pair_cost = statistics.median(log_costs) if log_costs else None
    ctx.target(3, "per-connection logging: connection rate lost with the log on (async daytime; capacity = "
                  "1 / server CPU per connection; one daemon, log switched off and on every 0.25 s)", "<=", 5.0,
               toggled.cost, unit="%",
               detail=f"{fmt_number(toggled.on)} µs/conn with, {fmt_number(toggled.off)} without, "
                      f"{toggled.slices} slices each (median of adjacent slice pairs "
                      f"{fmt_number(toggled.pair_median)} %); two daemons in {len(log_costs)} adjacent run pairs: "
                      f"median {fmt_number(pair_cost)} %, pairs {fmt_number(min(log_costs, default=None))} to "
                      f"{fmt_number(max(log_costs, default=None))} %; table medians {fmt_number(cpu_on)} µs/conn "
                      f"with, {fmt_number(cpu_off)} without; measured rates {fmt_number(on)}/s with, "
                      f"{fmt_number(off)}/s without")
    ctx.note(NAME, f"{CLIENTS} connections in flight from {describe()}, each connect/read-to-EOF/close; "
                   f"{duration:g} s per run, {runs} runs per subject, alternated; unpinned. "
                   "The log-on run writes inetkit's one line per connection to a file. "
                   "The log's cost (the target) is measured inside one daemon under one steady load "
                   "(`bench/logtoggle.py`): the log switched off and on every 0.25 s, the daemon's CPU and "
                   "connections read at each switch, cost = 1 - (CPU per connection off / on) over all slices. "
                   "Two daemons run apart see different machine states: runs of one subject spread by about "
                   f"±15 % here while the cost is a few per cent. Beside it, {len(log_costs)} adjacent pairs of "
                   f"{duration:g} s runs of the two daemons (log off then on, the order swapped every pair; one "
                   "pair's cost is 1 - (CPU per connection off / on)), as measured before.")


def _paired_log_costs(ctx: Context, servers: dict[str, Any], params: dict[str, Any], duration: float) -> list[float]:
    """Per-connection logging's cost, %, from adjacent log-off/log-on runs."""
    off, on = servers["inetkit async"], servers["inetkit async +log"]
    costs: list[float] = []
    pairs = ctx.runs(3, 12)
    for i in range(pairs):
        cpu: dict[str, float] = {}
        for label, server in ((("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))):
            say(f"{NAME} log pair {i + 1}/{pairs}: {label}")
            r = fast_load("connect", {**params, "port": server.port}, CLIENTS, duration, server)
            if r.ops:
                cpu[label] = r.server_cpu / r.ops
        if len(cpu) == 2 and cpu["on"] > 0:
            costs.append((1 - cpu["off"] / cpu["on"]) * 100)
    return costs
