"""A lossy UDP relay for tests and benchmarks (loopback only).

    with LossyRelay(server_address, to_server=Impairment(drop=0.1, duplicate=0.05, reorder=0.05),
                    to_client=Impairment(drop=0.1), seed=1) as relay:
        client.send_to(relay.address)

The client talks to ``relay.address``; the relay forwards to the server with
each datagram dropped, duplicated, reordered (held back so later datagrams
overtake it) or delayed as configured per direction, using a seeded RNG so
a failing run can be replayed.

TFTP answers every request from a new port (its transfer ID), so the relay
maps ports pairwise: each client address gets its own back socket towards
the server, and each (client, server address) pair gets its own front
socket towards the client.  The client therefore sees one relay port per
server TID, exactly as it would see the server's, and a packet a client
sends to a wrong TID still reaches the server's matching port.

Bounded: at most ``max_flows`` client addresses and ``max_pairs`` port
pairs, at most ``max_held`` datagrams in flight (beyond that they are
dropped and counted); one thread, stopped and joined by ``close()``.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

Addr = tuple[Any, ...]


@dataclass(frozen=True)
class Impairment:
    """What happens to datagrams in one direction (probabilities 0..1, seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    #: how long a reordered datagram is held back (later ones overtake it)
    reorder_delay: float = 0.002


@dataclass
class RelayStats:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    overflow: int = 0
    by_direction: dict[str, int] = field(default_factory=lambda: {"to_server": 0, "to_client": 0})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class LossyRelay:
    def __init__(
        self,
        target: Addr,
        *,
        to_server: Impairment = Impairment(),
        to_client: Impairment = Impairment(),
        seed: int = 0,
        max_flows: int = 64,
        max_pairs: int = 1024,
        max_held: int = 100_000,
    ) -> None:
        host = target[0]
        if not _is_loopback(host):
            raise ValueError(f"LossyRelay is for loopback only, not {host!r}")
        self.target = (host, target[1])
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.bind_host = "::1" if self.family == socket.AF_INET6 else "127.0.0.1"
        self.to_server = to_server
        self.to_client = to_client
        self.rng = random.Random(seed)
        self.max_flows = max_flows
        self.max_pairs = max_pairs
        self.max_held = max_held
        self.stats = RelayStats()
        self._sel = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        # front socket -> server address it stands for (None: the main one, i.e. target)
        self._front_peer: dict[socket.socket, Addr] = {}
        self._front_for: dict[tuple[Addr, Addr], socket.socket] = {}
        self._back_for: dict[Addr, socket.socket] = {}
        self._back_client: dict[socket.socket, Addr] = {}
        self._heap: list[tuple[float, int, socket.socket, bytes, Addr]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self.main = self._new_socket()
        self._front_peer[self.main] = self.target
        self._sel.register(self.main, selectors.EVENT_READ, ("front", self.main))
        self.address: tuple[str, int] = self.main.getsockname()[:2]
        self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LossyRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(10)
        self._sel.close()
        for sock in self._sockets:
            sock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- internals ---------------------------------------------------------------------------
    def _new_socket(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                except OSError:
                    pass
            sock.bind((self.bind_host, 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sockets.append(sock)
        return sock

    def _back(self, client: Addr) -> socket.socket | None:
        sock = self._back_for.get(client)
        if sock is None:
            if len(self._back_for) >= self.max_flows:
                return None
            sock = self._new_socket()
            self._back_for[client] = sock
            self._back_client[sock] = client
            self._sel.register(sock, selectors.EVENT_READ, ("back", sock))
        return sock

    def _front(self, client: Addr, server: Addr) -> socket.socket | None:
        if server == self.target:
            return self.main
        sock = self._front_for.get((client, server))
        if sock is None:
            if len(self._front_for) >= self.max_pairs:
                return None
            sock = self._new_socket()
            self._front_for[(client, server)] = sock
            self._front_peer[sock] = server
            self._sel.register(sock, selectors.EVENT_READ, ("front", sock))
        return sock

    def _schedule(self, imp: Impairment, direction: str, sock: socket.socket, data: bytes, addr: Addr) -> None:
        rng = self.rng
        if imp.drop and rng.random() < imp.drop:
            self.stats.dropped += 1
            return
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            copies = 2
            self.stats.duplicated += 1
        now = time.monotonic()
        for copy in range(copies):
            at = now + imp.delay + (rng.random() * imp.jitter if imp.jitter else 0.0)
            if imp.reorder and rng.random() < imp.reorder:
                at += imp.reorder_delay
                self.stats.reordered += 1
            if copy:
                at += 0.0001
            if len(self._heap) >= self.max_held:
                self.stats.overflow += 1
                return
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, sock, data, addr))
        self.stats.by_direction[direction] += 1

    def _flush(self) -> float | None:
        """Send what is due; returns seconds until the next datagram is due."""
        heap = self._heap
        while heap:
            now = time.monotonic()
            at = heap[0][0]
            if at > now:
                return at - now
            _, _, sock, data, addr = heapq.heappop(heap)
            try:
                sock.sendto(data, addr)
                self.stats.forwarded += 1
            except OSError:
                self.stats.overflow += 1
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._flush()
            events = self._sel.select(0.05 if wait is None else min(wait, 0.05))
            for key, _ in events:
                kind, sock = key.data
                if kind == "wake":
                    return
                for _ in range(64):  # drain a burst, bounded
                    try:
                        data, addr = sock.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    addr = addr[:2]
                    if kind == "front":
                        back = self._back(addr)
                        if back is not None:
                            self._schedule(self.to_server, "to_server", back, data, self._front_peer[sock])
                    else:
                        client = self._back_client[sock]
                        front = self._front(client, addr)
                        if front is not None:
                            self._schedule(self.to_client, "to_client", front, data, client)
