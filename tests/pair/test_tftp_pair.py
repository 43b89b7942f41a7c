"""Client session <-> server session in memory, through a simulated network
that drops, duplicates, reorders and delays datagrams (seeded)."""

from __future__ import annotations

import heapq
import os
import random

import pytest

from inetkit.proto.tftp import netascii
from inetkit.proto.tftp import packets as P
from inetkit.proto.tftp.options import Limits, Settings, negotiate, request_options
from inetkit.proto.tftp.session import Receiver, Sender


class MemSource:
    """Octet or netascii blocks of an in-memory file."""

    def __init__(self, data: bytes, blksize: int, mode: str) -> None:
        self.wire = netascii.encode(data) if mode == "netascii" else data
        self.blksize = blksize

    def block(self, index: int) -> bytes:
        return self.wire[(index - 1) * self.blksize:index * self.blksize]

    def release(self, below: int) -> None:
        pass


class Net:
    """Datagrams between two endpoints with per-direction impairments."""

    def __init__(self, seed: int, drop: float, dup: float, reorder: float) -> None:
        self.rng = random.Random(seed)
        self.drop, self.dup, self.reorder = drop, dup, reorder
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.seq = 0
        self.sent = 0
        self.counts: dict[str, int] = {}

    def send(self, now: float, dest: str, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.sent += 1
            self.counts[dest] = self.counts.get(dest, 0) + 1
            if self.rng.random() < self.drop:
                self.counts["dropped"] = self.counts.get("dropped", 0) + 1
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            for c in range(copies):
                delay = 0.0002 + (0.003 if self.rng.random() < self.reorder else 0.0) + c * 0.0001
                self.seq += 1
                heapq.heappush(self.queue, (now + delay, self.seq, dest, d))


def transfer(data: bytes, *, upload: bool, mode: str = "octet", blksize: int = 512, windowsize: int = 1,
             seed: int = 0, drop: float = 0.0, dup: float = 0.0, reorder: float = 0.0,
             limits: Limits = Limits(), counts: dict[str, int] | None = None,
             pipelined: bool = False) -> tuple[bytes, Sender | Receiver, Sender | Receiver | None]:
    """Run one transfer to completion; returns (bytes the receiver stored, client, server).

    ``pipelined``: drive the sessions as the real drivers do for windows:
    a sender prepares its next window after each send (``prepare``), a
    receiver takes datagrams through ``receive_burst`` with ``defer_writes``
    and writes after its answer went out (``write_deferred``)."""
    net = Net(seed, drop, dup, reorder)
    if counts is not None:
        net.counts = counts
    now = 0.0
    received = bytearray()
    decoder = netascii.Decoder()

    def sink(payload: bytes) -> None:
        received.extend(decoder.feed(payload) if mode == "netascii" else payload)

    opts = request_options(blksize=blksize, windowsize=windowsize, tsize=len(data) if upload else 0)
    request = P.encode_request(P.WRQ if upload else P.RRQ, "file", mode, opts)
    client: Sender | Receiver
    if upload:
        holder: dict[str, Sender] = {}

        class Lazy:
            def block(self, index: int) -> bytes:
                return MemSource(data, holder["s"].blksize, mode).block(index)

            def release(self, below: int) -> None:
                pass

        client = holder["s"] = Sender(Lazy(), Settings(timeout=0.05), now, request=request, requested=opts)
    else:
        client = Receiver(sink, Settings(timeout=0.05), now, request=request, requested=opts)
    server: Sender | Receiver | None = None

    def feed(s: Sender | Receiver, d: bytes, now: float, dest: str) -> None:
        if pipelined and isinstance(s, Receiver):
            s.defer_writes = True
            net.send(now, dest, s.receive_burst([d], now))
            net.send(now, dest, s.write_deferred())
            return
        net.send(now, dest, s.receive(d, now))
        if pipelined and isinstance(s, Sender):
            s.prepare()

    net.send(now, "server", client.start(now))
    for _ in range(2_000_000):
        if client.finished and (server is None or server.finished):
            break
        candidates = [net.queue[0][0]] if net.queue else []
        candidates += [s.next_deadline() for s in (client, server) if s is not None and s.next_deadline() is not None]  # type: ignore[misc]
        if not candidates:
            break
        now = max(now, min(candidates))  # type: ignore[type-var]
        while net.queue and net.queue[0][0] <= now:
            _, _, dest, d = heapq.heappop(net.queue)
            if dest == "server":
                if server is None:
                    req = P.decode(d)
                    assert isinstance(req, P.Request)
                    size = len(netascii.encode(data)) if mode == "netascii" else len(data)
                    oack, st = negotiate(req.options, limits, is_read=not upload, file_size=size)
                    first = P.encode_oack(oack) if oack else None
                    if upload:
                        server = Receiver(sink, st, now, first=first, dally=0.2)
                    else:
                        server = Sender(MemSource(data, st.blksize, mode), st, now, first=first)
                    net.send(now, "client", server.start(now))
                else:
                    feed(server, d, now, "client")
            else:
                feed(client, d, now, "server")
        for s, dest in ((client, "server"), (server, "client")):
            if s is not None:
                due = s.next_deadline()
                if due is not None and now >= due:
                    net.send(now, dest, s.on_timer(now))
    else:
        pytest.fail("transfer did not end")
    received.extend(decoder.flush() if mode == "netascii" else b"")
    return bytes(received), client, server


SIZES = [0, 1, 511, 512, 513, 1024, 5000]


@pytest.mark.parametrize("upload", [False, True], ids=["get", "put"])
@pytest.mark.parametrize("size", SIZES)
def test_clean_transfers(upload: bool, size: int) -> None:
    data = os.urandom(size)
    got, client, server = transfer(data, upload=upload)
    assert got == data and client.complete and server is not None and server.complete


@pytest.mark.parametrize("upload", [False, True], ids=["get", "put"])
@pytest.mark.parametrize("blksize, windowsize", [(512, 1), (1468, 16), (8, 7), (100, 64)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_dup_reorder_both_directions(upload: bool, blksize: int, windowsize: int, seed: int) -> None:
    data = random.Random(seed).randbytes(20_000 + seed)
    counts: dict[str, int] = {}
    got, client, server = transfer(data, upload=upload, blksize=blksize, windowsize=windowsize,
                                   seed=seed, drop=0.1, dup=0.05, reorder=0.05, counts=counts)
    assert counts.get("dropped", 0) > 0  # the network really lost datagrams...
    assert got == data and client.complete  # ...and the transfer is still byte-identical


@pytest.mark.parametrize("upload", [False, True], ids=["get", "put"])
@pytest.mark.parametrize("blksize, windowsize", [(512, 1), (1468, 16), (8, 7)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pipelined_windows_survive_loss(upload: bool, blksize: int, windowsize: int, seed: int) -> None:
    """Windows made ahead of time and writes held back until the ACK went out
    give the same bytes under loss, duplicates and reordering."""
    data = random.Random(seed).randbytes(20_000 + seed)
    counts: dict[str, int] = {}
    got, client, server = transfer(data, upload=upload, blksize=blksize, windowsize=windowsize, seed=seed,
                                   drop=0.1, dup=0.05, reorder=0.05, counts=counts, pipelined=True)
    assert counts.get("dropped", 0) > 0
    assert got == data and client.complete and server is not None


@pytest.mark.parametrize("upload", [False, True], ids=["get", "put"])
def test_netascii_cr_lf_at_block_edges(upload: bool) -> None:
    # CR LF, bare CR and LF placed on every side of the 512-byte block boundaries
    text = bytearray(b"a" * 2000)
    for edge in (511, 1022, 1533):
        text[edge - 1:edge + 2] = b"\r\n\r"
    text += b"\nlast line\r"
    got, client, _ = transfer(bytes(text), upload=upload, mode="netascii", seed=5, drop=0.05, dup=0.05, reorder=0.05)
    assert got == bytes(text) and client.complete


def test_server_ignoring_options_falls_back() -> None:
    data = os.urandom(3000)
    got, client, _ = transfer(data, upload=False, blksize=1468, windowsize=8, limits=Limits(max_blksize=512, max_windowsize=1))
    assert got == data and client.blksize == 512 and client.windowsize == 1


def test_no_duplicate_data_bursts_under_duplicated_acks() -> None:
    """Sorcerer's Apprentice: with every datagram duplicated, the sender's DATA
    count must stay near one per block, not grow with the duplicates."""
    data = os.urandom(512 * 200)
    counts: dict[str, int] = {}
    got, client, server = transfer(data, upload=False, seed=9, dup=1.0, counts=counts)
    assert got == data
    assert server is not None and server.retransmissions == 0
    # the OACK (tsize was asked) + 201 DATA blocks (the last one empty),
    # although every ACK arrived twice
    assert counts["client"] == 1 + 201
