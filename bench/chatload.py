"""Chat load generators (worker processes, like ``bench/load.py``).

Every client names itself with its first line (inetkit's chat takes the
first line as the nickname; the bare reference just relays it), then:

- ``listen``: N clients read lines; a line carrying ``~bm~ID~T~`` (message
  ID sent at CLOCK_MONOTONIC time T, which is system-wide) records one
  delivery and its latency;
- ``send``: one client sends ``count`` such lines, ``interval`` apart;
- ``flood``: N clients each keep ``window`` messages of their own in flight
  (a new one when one of its own comes back), and every delivered message
  line is counted: messages delivered per second.  Every count is checked:
  each message carries its sender's sequence number, and a receiver must
  see each sender's numbers consecutively (from the first it counted), so a
  lost, repeated or reordered delivery shows as ``disorder`` instead of
  passing as throughput.

All loops are bounded by a deadline and a count.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.load import SETUP_TIMEOUT, run_workers

MARK = b"~bm~"
QUIET = 0.5


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class Client(asyncio.Protocol):
    def __init__(self, on_line: Any) -> None:
        self.on_line = on_line
        self.buf = b""
        self.received = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.buf += data
        if b"\n" not in self.buf:
            return
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if MARK in line:
                self.on_line(self, line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def _connect(loop: asyncio.AbstractEventLoop, port: int, count: int, prefix: str, on_line: Any) -> list[Client]:
    clients = []
    for i in range(count):
        _, c = await loop.create_connection(lambda: Client(on_line), "127.0.0.1", port)
        c.transport.write(f"{prefix}{i}\n".encode())  # type: ignore[attr-defined]
        clients.append(c)
    return clients


async def _quiet(clients: list[Client], limit: float) -> None:
    """Wait until nothing arrives for QUIET seconds (join notices drained)."""
    deadline = time.monotonic() + limit
    last = -1
    while time.monotonic() < deadline:
        total = sum(c.received for c in clients)
        if total == last:
            return
        last = total
        await asyncio.sleep(QUIET)


def _worker(kind: str, p: dict[str, Any], ready: Any, go: Any, done: Any, results: Any) -> None:
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(_run(kind, p, ready, go, done))
        results.put(result)
        done.wait(SETUP_TIMEOUT)
    except BaseException as exc:
        results.put({"error": repr(exc)})
        ready.put(-1)
    finally:
        loop.close()


async def _wait_event(event: Any, timeout: float) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait, timeout)


async def _run(kind: str, p: dict[str, Any], ready: Any, go: Any, done: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    port = p["port"]
    if kind == "listen":
        latencies: list[float] = []
        expected = p["count"] * p["conns"]

        def on_line(client: Client, line: bytes) -> None:
            parts = line.split(MARK, 1)[1].split(b"~")
            if len(parts) >= 2 and parts[0].startswith(b"m"):
                latencies.append(time.monotonic() - float(parts[1]))

        clients = await _connect(loop, port, p["conns"], p["prefix"], on_line)
        await _quiet(clients, SETUP_TIMEOUT)
        ready.put(os.getpid())
        await _wait_event(go, SETUP_TIMEOUT)
        cpu0 = _cpu()
        deadline = time.monotonic() + p["deadline"]
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        out = {"latencies": latencies, "expected": expected, "lost": sum(c.lost for c in clients),
               "cpu": _cpu() - cpu0}
        for c in clients:
            c.transport.close()  # type: ignore[attr-defined]
        return out
    if kind == "send":
        clients = await _connect(loop, port, 1, p["prefix"], lambda c, line: None)
        await _quiet(clients, SETUP_TIMEOUT)
        ready.put(os.getpid())
        await _wait_event(go, SETUP_TIMEOUT)
        await asyncio.sleep(0.2)  # listeners are reading by now
        for i in range(p["count"]):
            clients[0].transport.write(b"%sm%d~%.6f~ fan-out\n" % (MARK, i, time.monotonic()))  # type: ignore[attr-defined]
            await asyncio.sleep(p["interval"])
        await asyncio.sleep(1.0)
        clients[0].transport.close()  # type: ignore[attr-defined]
        return {"sent": p["count"]}
    if kind == "flood":
        state = {"delivered": 0, "running": False, "completed": 0, "disorder": 0}
        window = p["window"]
        skip = len(MARK)

        def send(client: Client) -> None:
            client.seq += 1  # type: ignore[attr-defined]
            client.transport.write(b"%sf~%s~%d~\n" % (MARK, client.tag, client.seq))  # type: ignore[attr-defined]

        def on_line(client: Client, line: bytes) -> None:
            if not state["running"]:
                return
            state["delivered"] += 1
            # MARK f~TAG~SEQ~: the same parse for every server, whatever it prefixes
            _, tag, seq, _ = line[line.index(MARK) + skip:].split(b"~", 3)
            n = int(seq)
            last = client.last.get(tag)  # type: ignore[attr-defined]
            if last is not None and n != last + 1:
                state["disorder"] += 1
            client.last[tag] = n  # type: ignore[attr-defined]
            if tag == client.tag:  # type: ignore[attr-defined]
                state["completed"] += 1
                send(client)

        clients = await _connect(loop, port, p["conns"], p["prefix"], on_line)
        for i, c in enumerate(clients):
            c.tag = f"{p['prefix']}{i}".encode()  # type: ignore[attr-defined]
            c.seq = 0  # type: ignore[attr-defined]
            c.last = {}  # type: ignore[attr-defined]
        await _quiet(clients, SETUP_TIMEOUT)
        ready.put(os.getpid())
        await _wait_event(go, SETUP_TIMEOUT)
        state["running"] = True
        cpu0, t0 = _cpu(), time.perf_counter()
        for c in clients:
            for _ in range(window):
                send(c)
        await asyncio.sleep(p["duration"])
        state["running"] = False
        elapsed = time.perf_counter() - t0
        out = {"delivered": state["delivered"], "completed": state["completed"], "elapsed": elapsed,
               "cpu": _cpu() - cpu0, "lost": sum(c.lost for c in clients), "disorder": state["disorder"]}
        for c in clients:
            c.transport.close()  # type: ignore[attr-defined]
        return out
    raise ValueError(kind)


def run_chat(jobs: list[tuple[str, dict[str, Any]]], server: Any, timeout: float) -> tuple[list[dict[str, Any]], float]:
    """Start one process per job, release them together once all are set up;
    returns their results and the server's CPU seconds meanwhile."""
    return run_workers(_worker, jobs, server, timeout)
