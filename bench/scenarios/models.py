"""Server models: the chapter's lesson as a picture.

One inetkit daemon serves the same 200 ms handler (``bench/handlers.py``:
``SleepyService``, the seed's ``sleep(5)`` shortened; under ``exec`` a Python
program that sleeps and answers) under five models: iterative, fork, exec,
thread, async.  For N = 1..50 clients connecting at the same instant, the bench
measures the total wall time until every client got its answer, and each
client's latency.  Iterative serves one at a time, so its time climbs as
N x 200 ms; the concurrent models stay near 200 ms (exec adds an interpreter
start per connection).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from contextlib import ExitStack

from bench.handlers import sleepy_program
from bench.harness import Context, alternate, say
from bench.servers import start_inetkit
from bench.stats import fmt_number, markdown_table, summarize

NAME = "models"
DELAY = 0.2
MODELS = ["iterative", "fork", "exec", "thread", "async"]
CLIENT_TIMEOUT = 60.0


def burst(port: int, clients: int) -> tuple[float, list[float], int]:
    """``clients`` threads connect at once and read to EOF.  Returns the wall
    time until the last one finished, each one's latency, and the failures."""
    barrier = threading.Barrier(clients + 1, timeout=CLIENT_TIMEOUT)
    latencies: list[float] = []
    ends: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as s:
                data = b""
                while True:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    data += chunk
            ok = data == b"done\n"
        except OSError:
            ok = False
        end = time.perf_counter()
        with lock:
            if ok:
                latencies.append(end - start)
                ends.append(end)
            else:
                failures[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(CLIENT_TIMEOUT)
    wall = (max(ends) - t0) if ends else float("nan")
    return wall, latencies, failures[0]


def run(ctx: Context) -> None:
    levels = ctx.pick([1, 10, 25], [1, 2, 5, 10, 20, 30, 40, 50])
    runs = ctx.runs(2, 3)
    services = {}
    for model in MODELS:
        if model == "exec":
            services[f"sleepy-{model}"] = {"proto": "tcp", "model": "exec", "program": sleepy_program(DELAY)}
        else:
            services[f"sleepy-{model}"] = {"proto": "tcp", "model": model, "handler": "bench.handlers:SleepyService",
                                          "options": {"delay": DELAY}}
    # wall[model][level] -> runs; lat[model][level] -> every client's latency
    wall: dict[str, dict[int, list[float]]] = {m: {n: [] for n in levels} for m in MODELS}
    lat: dict[str, dict[int, list[float]]] = {m: {n: [] for n in levels} for m in MODELS}
    failures: dict[str, int] = {m: 0 for m in MODELS}
    with ExitStack() as stack:
        server = start_inetkit("models", services)
        stack.callback(server.stop)
        ports = {m: server.extra_ports[f"sleepy-{m}/tcp"] for m in MODELS}
        for model in MODELS:  # warm up: the fork worker, the exec path, the thread pool
            burst(ports[model], 2)

        def measure(_run: int, model: str) -> None:
            for n in levels:
                w, lats, failed = burst(ports[model], n)
                wall[model][n].append(w)
                lat[model][n].extend(lats)
                failures[model] += failed
            say(f"  {model}: " + ", ".join(f"{n}: {statistics.median(wall[model][n]):.2f}s" for n in levels))

        alternate(ctx, MODELS, runs, measure, NAME)

    top = levels[-1]
    m_wall = ctx.measurement(NAME, f"wall time for {top} clients", "s")
    m_lat = ctx.measurement(NAME, f"per-client latency, {top} clients (mean)", "s")
    for model in MODELS:
        for value in wall[model][top]:
            m_wall.add(model, value)
        m_lat.add(model, statistics.fmean(lat[model][top]) if lat[model][top] else None)
        if failures[model]:
            ctx.note(NAME, f"{model}: {failures[model]} clients got no answer.")
    rows = []
    for model in MODELS:
        cells = []
        for n in levels:
            s = summarize(wall[model][n])
            cells.append(fmt_number(s.median) if s else "–")
        rows.append([model, *cells])
    ctx.table(NAME, "Total wall time (s, median) by number of concurrent clients:\n\n"
              + markdown_table(["model", *[str(n) for n in levels]], rows))
    ctx.raw[NAME] = {"levels": levels, "delay": DELAY, "wall": wall,
                     "latency_summary": {m: {n: (summarize(lat[m][n]).as_dict() if lat[m][n] else None)
                                             for n in levels} for m in MODELS}}
    try:
        plot(ctx, levels, wall, lat)
    except ImportError:
        ctx.note(NAME, "models.png not drawn: matplotlib missing (pip install -e '.[bench]').")
    ctx.note(NAME, f"Handler: {DELAY * 1000:.0f} ms then `done\\n` (exec: `python -S -c` sleeping, so each "
                   "connection also pays an interpreter start). All N clients are released together by a "
                   f"barrier (threads in the bench process); {runs} runs per model, models alternated; unpinned.")


def plot(ctx: Context, levels: list[int], wall: dict[str, dict[int, list[float]]],
         lat: dict[str, dict[int, list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in MODELS:
        med = [statistics.median(wall[model][n]) for n in levels]
        lo = [min(wall[model][n]) for n in levels]
        hi = [max(wall[model][n]) for n in levels]
        (line,) = left.plot(levels, med, marker="o", label=model)
        left.fill_between(levels, lo, hi, color=line.get_color(), alpha=0.15)
        means = [statistics.fmean(lat[model][n]) * 1000 if lat[model][n] else float("nan") for n in levels]
        p99 = [sorted(lat[model][n])[int(0.99 * (len(lat[model][n]) - 1))] * 1000 if lat[model][n] else float("nan")
               for n in levels]
        right.plot(levels, means, marker="o", color=line.get_color(), label=f"{model} mean")
        right.plot(levels, p99, linestyle=":", color=line.get_color())
    left.set(title=f"All clients served (handler {DELAY * 1000:.0f} ms)", xlabel="concurrent clients",
             ylabel="total wall time (s)")
    right.set(title="Per-client latency (solid: mean, dotted: p99)", xlabel="concurrent clients",
              ylabel="latency (ms)", yscale="log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("inetkit server models: iterative climbs, concurrent models stay flat")
    fig.tight_layout()
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(ctx.results_dir / "models.png", dpi=110)
    plt.close(fig)
    ctx.plot(NAME, "models.png")
