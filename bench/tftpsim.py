"""``python -m bench.tftpsim [SEEDS]``: inetkit's windowed TFTP sessions under
5 % loss each way, in a deterministic simulation (no sockets, no clock).

The bench's loss figure runs real processes through a Python relay on a
shared 2-core machine and moves by +-0.15 from run to run; this replays the
same sans-IO ``Sender`` and ``Receiver`` (server with OACK, client with its
RRQ) over a modelled relay: one forwarding thread that takes 14 us per
datagram (what the Python relay manages), 40 us of latency each way, 3 us
of session work per datagram, seeded drops.  It prints the loss-free and
lossy transfer times of an 8 MiB get at blksize 1468, windowsize 16, and
the ratio the bench reports ("keeps X of its loss-free throughput"), so a
change to loss recovery can be judged without noise.  The transfer counts
as done when the client has every byte (what the client's timer measures).
"""

from __future__ import annotations

import heapq
import random
import sys

from inetkit.proto.tftp import packets as P
from inetkit.proto.tftp.options import Settings
from inetkit.proto.tftp.session import Receiver, Sender

PER_DATAGRAM = 14e-6
LATENCY = 40e-6
WORK = 3e-6


class _Zeros:
    def __init__(self, size: int, blksize: int) -> None:
        self.size, self.blksize = size, blksize

    def block(self, index: int) -> bytes:
        return bytes(max(0, min(self.blksize, self.size - (index - 1) * self.blksize)))

    def release(self, below: int) -> None:
        pass


def transfer(drop: float, seed: int, size: int = 8 << 20, blksize: int = 1468, windowsize: int = 16) -> float:
    """Simulated seconds until the client has the whole file."""
    rng = random.Random(seed)
    opts = {"blksize": str(blksize), "windowsize": str(windowsize)}
    got = [0]
    sender = Sender(_Zeros(size, blksize), Settings(blksize=blksize, windowsize=windowsize, timeout=1.0), 0.0,
                    first=P.encode_oack(opts))
    receiver = Receiver(lambda p: got.__setitem__(0, got[0] + len(p)), Settings(timeout=1.0), 0.0,
                        request=P.encode_request(P.RRQ, "f", "octet", opts), requested=opts)
    receiver.start(0.0)  # the RRQ itself is not simulated: the server starts with its OACK
    events: list[tuple[float, int, str, bytes]] = []
    order = 0
    relay_free = 0.0
    busy = {"client": 0.0, "server": 0.0}

    def send(now: float, to: str, datagrams: list[bytes]) -> None:
        nonlocal order, relay_free
        for datagram in datagrams:
            if drop and rng.random() < drop:
                continue
            start = max(now, relay_free)
            relay_free = start + PER_DATAGRAM
            order += 1
            heapq.heappush(events, (relay_free + LATENCY, order, to, datagram))

    now = 0.0
    send(now, "client", sender.start(now))
    while not receiver.complete and now < 60:
        timers = [(t, who) for t, who in ((sender.next_deadline(), "server"), (receiver.next_deadline(), "client"))
                  if t is not None]
        next_event = events[0][0] if events else float("inf")
        next_timer = min(timers) if timers else (float("inf"), "")
        if next_event <= next_timer[0]:
            at, _, who, datagram = heapq.heappop(events)
            now = max(at, busy[who])
            busy[who] = now + WORK
            if who == "client":
                send(now, "server", receiver.receive(datagram, now))
            else:
                send(now, "client", sender.receive(datagram, now))
        else:
            now, who = next_timer
            if who == "server":
                send(now, "client", sender.on_timer(now))
            else:
                send(now, "server", receiver.on_timer(now))
    if got[0] != size:
        raise RuntimeError(f"seed {seed}: {got[0]} of {size} bytes ({receiver.failure or sender.failure})")
    return now


def main(argv: list[str]) -> int:
    seeds = int(argv[0]) if argv else 10
    clean = sum(transfer(0.0, s) for s in range(3)) / 3
    lossy = sum(transfer(0.05, s) for s in range(1, seeds + 1)) / seeds
    print(f"no loss {clean * 1e3:.1f} ms, 5% loss each way {lossy * 1e3:.1f} ms (mean of {seeds} seeds): "
          f"keeps {clean / lossy:.2f}x of the loss-free throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
