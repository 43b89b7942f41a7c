"""Chat fan-out: inetkit's ``chat`` service (async, one room) against a bare
asyncio broadcast loop (``bench/refservers.py chat-asyncio``: every line to
every client, nothing else).

- Fan-out: 1,000 clients in the room (two listener processes), one sender
  sending 100 messages 20 ms apart; every delivery's latency (send to
  arrival, CLOCK_MONOTONIC) is recorded; every message must reach every
  listener.  Target (issue 7): p99 < 50 ms.
- Throughput: 100 clients all sending (each keeps 2 of its own messages in
  flight, sending the next when one comes back); messages delivered per
  second, counted at the clients, every count checked against the
  senders' sequence numbers.  Target: inetkit >= 0.8x the reference.

inetkit's per-client message rate limit is switched off (``rate = 0``) so
the flood measures the relay, not the limiter.
"""

from __future__ import annotations

from contextlib import ExitStack

from bench.chatload import run_chat
from bench.harness import Context, alternate, say, start_all
from bench.scenarios import NotAvailable, service_available
from bench.servers import start_inetkit, start_reference
from bench.stats import fmt_number, percentile

NAME = "chat"


def run(ctx: Context) -> None:
    if not service_available("chat"):
        raise NotAvailable("service missing (inetkit.services.chat)")
    listeners = ctx.pick(500, 1000)
    messages = ctx.pick(20, 100)
    interval = 0.02
    senders = 100
    duration = ctx.pick(1.5, 3.0)
    runs = ctx.runs(1, 3)
    starters = {
        "inetkit chat": lambda: start_inetkit("chat", {"chat": {"proto": "tcp", "handler": "chat", "model": "async",
                                                               "options": {"rate": 0}}}),
        "bare asyncio broadcast": lambda: start_reference("bare broadcast", "chat-asyncio"),
    }
    p99 = ctx.measurement(NAME, f"fan-out latency p99, {listeners} listeners", "ms", higher_is_better=False)
    p50 = ctx.measurement(NAME, f"fan-out latency median, {listeners} listeners", "ms", higher_is_better=False)
    rate = ctx.measurement(NAME, f"messages delivered/s, {senders} clients sending", "msg/s",
                           reference="bare asyncio broadcast")
    cpu = ctx.measurement(NAME, "server CPU per delivered message", "µs", reference="bare asyncio broadcast",
                          higher_is_better=False)
    complete: dict[str, list[str]] = {}
    checked: dict[str, list[str]] = {}
    with ExitStack() as stack:
        servers = start_all(stack, ctx, NAME, starters)

        def measure(_run: int, label: str) -> None:
            # a fresh room per run: restart the server so earlier clients' notices are gone
            server = servers[label]
            half = listeners // 2
            jobs = [("listen", {"port": server.port, "conns": half, "prefix": f"l{_run}a", "count": messages,
                                "deadline": messages * interval + 15}),
                    ("listen", {"port": server.port, "conns": listeners - half, "prefix": f"l{_run}b",
                                "count": messages, "deadline": messages * interval + 15}),
                    ("send", {"port": server.port, "prefix": f"s{_run}x", "count": messages, "interval": interval})]
            results, _ = run_chat(jobs, server, messages * interval + 60)
            lats = [x for r in results if "latencies" in r for x in r["latencies"]]
            expected = sum(r.get("expected", 0) for r in results)
            lost = sum(r.get("lost", 0) for r in results)
            if lats:
                p99.add(label, percentile(lats, 99) * 1000)
                p50.add(label, percentile(lats, 50) * 1000)
            complete.setdefault(label, []).append(f"{len(lats)}/{expected}" + (f", {lost} dropped" if lost else ""))
            say(f"  {label} fan-out: {len(lats)}/{expected} delivered, p99 "
                f"{percentile(lats, 99) * 1000 if lats else float('nan'):.1f} ms")
            flood = [("flood", {"port": server.port, "conns": senders // 2, "prefix": f"w{_run}{k}c", "window": 2,
                                "duration": duration}) for k in range(2)]
            results, server_cpu = run_chat(flood, server, duration + 60)
            delivered = sum(r["delivered"] for r in results)
            elapsed = max(r["elapsed"] for r in results)
            rate.add(label, delivered / elapsed)
            cpu.add(label, server_cpu * 1e6 / delivered if delivered else None)
            lost = sum(r["lost"] for r in results)
            if lost:
                ctx.note(NAME, f"{label}: {lost} flooding clients were disconnected in one run.")
            disorder = sum(r["disorder"] for r in results)
            if disorder:
                ctx.note(NAME, f"{label}: {disorder} of {delivered} counted deliveries broke a sender's sequence "
                               "(lost, repeated or reordered) in one run.")
            checked.setdefault(label, []).append(f"{delivered - disorder}/{delivered}")
            say(f"  {label} flood: {delivered / elapsed:.0f} msg/s delivered, {disorder} out of sequence")

        alternate(ctx, list(servers), runs, measure, NAME)
    for label, runs_done in complete.items():
        p99.notes[label] = "delivered/expected per run: " + "; ".join(runs_done)
    for label, runs_done in checked.items():
        rate.notes[label] = "in sequence/counted per run: " + "; ".join(runs_done)
    s = p99.summary("inetkit chat")
    ctx.target(7, f"{listeners} clients in one room, one sender: fan-out latency p99", "<", 50.0,
               s.median if s else None, unit="ms", detail=p99.notes.get("inetkit chat", ""))
    ctx.target(7, f"messages/s delivered, {senders} clients sending: inetkit vs bare asyncio broadcast", ">=", 0.8,
               rate.ratio_to("inetkit chat", "bare asyncio broadcast"),
               detail=f"{fmt_number(_med(rate, 'inetkit chat'))} vs {fmt_number(_med(rate, 'bare asyncio broadcast'))} msg/s")
    ctx.note(NAME, f"Fan-out: {listeners} listeners in 2 processes, 1 sender, {messages} messages {interval * 1000:.0f} ms "
                   f"apart; throughput: {senders} clients in 2 processes, 2 messages each in flight, {duration:g} s; "
                   f"{runs} runs, alternated; the same server serves every run (each run's clients join a room "
                   "the previous run's have left); unpinned; load generators use uvloop. Writes: the bare loop "
                   "writes each member once per read it handles; inetkit once per event-loop pass (the lines of "
                   "every read in that pass joined), and its lines carry a `<nick> ` prefix the bare loop does not add.")


def _med(m, label):  # type: ignore[no-untyped-def]
    s = m.summary(label)
    return s.median if s else None
