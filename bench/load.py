"""Load generators, run in separate processes so that the client is not the
bottleneck of one Python interpreter (the machine has 2 cores: the client
processes and the server share them, which is why server CPU per operation
is reported beside every rate).

``run_load(kind, params, processes, duration, server)``:

1. starts ``processes`` workers (multiprocessing, forked from a forkserver);
2. each sets up (opens its connections) and says ready;
3. the server's CPU is sampled, then every worker is released at once;
4. each worker runs for ``duration`` seconds (and at most ``max_ops``
   operations), reports its operation count, its own CPU and latencies, and
   waits; the server's CPU is sampled again before the workers tear down.

Kinds: ``echo`` (closed-loop round trips of ``size`` bytes on ``conns``
connections per worker), ``connect`` (short connections: connect, read to EOF,
close, in a loop), ``hold`` (helper for idle connections, see scenarios).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

SETUP_TIMEOUT = 60.0
#: hard cap on operations per worker per run, whatever the duration
MAX_OPS = 5_000_000


@dataclass
class LoadResult:
    ops: int
    errors: int
    elapsed: float
    client_cpu: float
    server_cpu: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- worker bodies ------------------------------------------------------------------


def _echo_worker(params: dict[str, Any], ready: Any, go: Any, done: Any, results: Any) -> None:
    import asyncio

    import uvloop

    host, port = params["host"], params["port"]
    conns, size, duration = params["conns"], params["size"], params["duration"]
    payload = b"x" * size
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    state = {"ops": 0, "running": False, "errors": 0}
    max_ops = params.get("max_ops", MAX_OPS)

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.got = 0

        def kick(self) -> None:
            self.got = 0
            self.transport.write(payload)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.got += len(data)
            if self.got >= size:
                state["ops"] += 1
                if state["running"] and state["ops"] < max_ops:
                    self.kick()

        def connection_lost(self, exc: Exception | None) -> None:
            if state["running"]:
                state["errors"] += 1

    async def setup() -> list[Client]:
        clients = []
        for _ in range(conns):
            _, proto = await loop.create_connection(Client, host, port)
            clients.append(proto)
        return clients

    clients = loop.run_until_complete(asyncio.wait_for(setup(), SETUP_TIMEOUT))
    ready.put(os.getpid())
    go.wait(SETUP_TIMEOUT)
    state["running"] = True
    cpu0, t0 = _cpu(), time.perf_counter()
    for c in clients:
        c.kick()
    loop.run_until_complete(asyncio.sleep(duration))
    state["running"] = False
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    results.put({"ops": state["ops"], "errors": state["errors"], "elapsed": elapsed, "cpu": cpu, "lat": []})
    done.wait(SETUP_TIMEOUT)
    for c in clients:
        c.transport.close()  # type: ignore[attr-defined]
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()


def _connect_worker(params: dict[str, Any], ready: Any, go: Any, done: Any, results: Any) -> None:
    """One client doing short connections back to back (blocking sockets:
    the leanest client loop Python has)."""
    addr = (params["host"], params["port"])
    duration = params["duration"]
    max_ops = params.get("max_ops", MAX_OPS)
    expect = params.get("expect", 1)
    ready.put(os.getpid())
    go.wait(SETUP_TIMEOUT)
    ops = errors = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    deadline = t0 + duration
    lat: list[float] = []
    sample_every = params.get("sample_every", 50)
    while ops < max_ops:
        start = time.perf_counter()
        if start >= deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5.0)
        try:
            s.connect(addr)
            got = 0
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += len(chunk)
            if got >= expect:
                ops += 1
                if ops % sample_every == 0:
                    lat.append(time.perf_counter() - start)
            else:
                errors += 1
        except OSError:
            errors += 1
        finally:
            s.close()
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    results.put({"ops": ops, "errors": errors, "elapsed": elapsed, "cpu": cpu, "lat": lat})
    done.wait(SETUP_TIMEOUT)


WORKERS = {"echo": _echo_worker, "connect": _connect_worker}


def _entry(kind: str, params: dict[str, Any], ready: Any, go: Any, done: Any, results: Any) -> None:
    try:
        WORKERS[kind](params, ready, go, done, results)
    except BaseException as exc:  # reported to the parent instead of a silent hang
        results.put({"error": repr(exc)})
        ready.put(-1)


_CONTEXT: Any = None


def _mp_context() -> Any:
    """forkserver: workers fork from a small single-threaded server process
    that has the load code imported already, so starting 10 of them per run
    costs milliseconds, not a fresh interpreter each."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["bench.load", "uvloop", "asyncio"])
    return _CONTEXT


def _wait_ready(ready: Any, results: Any, procs: list[Any]) -> None:
    """Wait (bounded) until every worker said ready; fail fast if one died."""
    import queue

    deadline = time.monotonic() + SETUP_TIMEOUT
    count = 0
    while count < len(procs):
        try:
            if ready.get(timeout=0.2) == -1:
                raise RuntimeError(f"load worker failed: {results.get(timeout=5)}")
            count += 1
        except queue.Empty:
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                raise RuntimeError(f"load worker {dead[0].pid} exited with {dead[0].exitcode} during setup") from None
            if time.monotonic() > deadline:
                raise TimeoutError("load workers not ready in time") from None


def run_workers(target: Any, jobs: list[tuple[str, dict[str, Any]]], server: Any,
                timeout: float) -> tuple[list[dict[str, Any]], float]:
    """Start one process per ``(kind, params)`` job running ``target(kind,
    params, ready, go, done, results)``; release them together once every one
    is set up; return their results and the server's CPU seconds meanwhile.
    Every process is joined (killed if it lingers) whatever happens."""
    ctx = _mp_context()
    ready, results = ctx.Queue(), ctx.Queue()
    go, done = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=target, args=(kind, params, ready, go, done, results), daemon=True)
             for kind, params in jobs]
    for p in procs:
        p.start()
    try:
        _wait_ready(ready, results, procs)
        cpu0 = server.cpu()
        go.set()
        collected = [results.get(timeout=timeout) for _ in procs]
        cpu = server.cpu() - cpu0
        done.set()
    finally:
        go.set()
        done.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        ready.close()
        results.close()
    failed = [r for r in collected if "error" in r]
    if failed:
        raise RuntimeError(f"load worker failed: {failed[0]['error']}")
    return collected, cpu


def run_load(kind: str, params: dict[str, Any], processes: int, duration: float, server: Any) -> LoadResult:
    """Run ``processes`` workers of ``kind`` against ``server`` (see module doc)."""
    params = {**params, "duration": duration}
    collected, server_cpu = run_workers(_entry, [(kind, params)] * processes, server, duration + SETUP_TIMEOUT)
    elapsed = max(r["elapsed"] for r in collected)
    lat = [x for r in collected for x in r["lat"]]
    return LoadResult(
        ops=sum(r["ops"] for r in collected), errors=sum(r["errors"] for r in collected),
        elapsed=elapsed, client_cpu=sum(r["cpu"] for r in collected), server_cpu=server_cpu,
        latencies=lat,
    )
