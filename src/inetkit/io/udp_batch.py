"""Batched UDP I/O for windowed transfers (TFTP windowsize): Linux UDP GSO/GRO.

A TFTP window is a run of datagrams of the same length (only the last block
of a file may be shorter).  With ``UDP_SEGMENT`` (GSO, Linux >= 4.18) the
whole run leaves in one ``sendmsg``: the kernel cuts it into datagrams of
the given size, so the peer sees ordinary datagrams, whatever it runs.
With ``UDP_GRO`` (Linux >= 5.0) a receiving socket may get such a run back
in one ``recvmsg`` together with the segment size, and splits it here.
Either falls back to one syscall per datagram when the kernel says no, and
``INETKIT_NO_GSO=1`` in the environment turns both off (for comparisons).
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
import sys
import time
from typing import Any

#: socket buffers asked for per transfer: a window of 16 x 64 KiB blocks must fit
SOCKET_BUFFER = 4 * 1024 * 1024
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: the kernel limits one GSO send to 64 segments and a 64 KiB datagram
MAX_SEGMENTS = 64
MAX_GSO_BYTES = 65000
_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_DISABLED = os.environ.get("INETKIT_NO_GSO", "") not in ("", "0")
_GIVE_UP = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EIO, errno.EMSGSIZE}


class BatchSender:
    """``send(datagrams, addr)``: one GSO ``sendmsg`` per run of equal-sized
    datagrams, else ``sendto`` each.  Returns how many were dropped because
    the socket buffer was full (like a loss on the wire).  ``addr`` None (or
    ``send_connected``): the socket is connected, no address is passed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.gso = sys.platform.startswith("linux") and hasattr(sock, "sendmsg") and not _DISABLED

    def send_connected(self, datagrams: list[bytes]) -> int:
        return self.send(datagrams, None)

    def send(self, datagrams: list[bytes], addr: Any) -> int:
        if len(datagrams) < 2 or not self.gso:
            return self._each(datagrams, addr)
        dropped = 0
        i, n = 0, len(datagrams)
        while i < n:
            size = len(datagrams[i])
            limit = min(MAX_SEGMENTS, MAX_GSO_BYTES // max(1, size))
            j = i + 1
            while j < n and j - i < limit and len(datagrams[j]) == size:
                j += 1
            if j < n and j - i < limit and len(datagrams[j]) < size:
                j += 1  # a shorter last segment is allowed
            if j - i == 1 or not self.gso:
                dropped += self._each(datagrams[i:j], addr)
            else:
                dropped += self._gso(datagrams[i:j], size, addr)
            i = j
        return dropped

    def _gso(self, run: list[bytes], size: int, addr: Any) -> int:
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", size))]
        try:
            if addr is None:
                self.sock.sendmsg([b"".join(run)], cmsg)
            else:
                self.sock.sendmsg([b"".join(run)], cmsg, 0, addr)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return len(run)
        except OSError as exc:
            if exc.errno in _GIVE_UP:
                self.gso = False  # this kernel or route cannot: plain datagrams from now on
                return self._each(run, addr)
            return 0
        return 0

    def _each(self, datagrams: list[bytes], addr: Any) -> int:
        dropped = 0
        sock = self.sock
        for datagram in datagrams:
            try:
                if addr is None:
                    sock.send(datagram)
                else:
                    sock.sendto(datagram, addr)
            except (BlockingIOError, InterruptedError, TimeoutError):
                dropped += 1
            except OSError:
                pass
        return dropped


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced receives; False when unsupported."""
    if not sys.platform.startswith("linux") or _DISABLED:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def split_gro(data: bytes, ancillary: list[tuple[int, int, bytes]], views: bool = False) -> list[Any]:
    """The datagrams of one ``recvmsg`` result (several when GRO coalesced them);
    ``views``: memoryview slices of ``data`` instead of copies."""
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 2:
            size = int.from_bytes(value[:2], sys.byteorder) if len(value) < 4 else struct.unpack("i", value[:4])[0]
            if 0 < size < len(data):
                whole: Any = memoryview(data) if views else data
                return [whole[k:k + size] for k in range(0, len(data), size)]
    return [data]


RECV_SIZE = 65536
CMSG_SIZE = _CMSG_SPACE


#: seconds a windowed transfer polls (yielding the CPU) before it sleeps; see precise_waiter
SPIN = float(os.environ.get("INETKIT_TFTP_SPIN_US", "150")) / 1e6


def precise_waiter(sock: socket.socket, spin: float = 0.0) -> Any:
    """``wait(seconds) -> bool``: True once ``sock`` is readable, False after
    ``seconds``, to about 50 us.

    For the short timers of windowed transfers (tail-loss probes, gap
    recovery): SO_RCVTIMEO counts in scheduler ticks (asked for 1 ms, a
    recv here wakes after 6-12 ms) and poll/epoll in whole milliseconds;
    select() takes microseconds.  select() only handles descriptors below
    FD_SETSIZE, so a busy daemon's higher ones fall back to poll().

    ``spin``: first poll for up to this long, calling sched_yield() between
    polls.  A window's answer usually comes within ~100 us, and waking a
    sleeping process on another CPU costs ~60 us on this kind of VM; the
    yield hands the CPU to the peer at once when both share one CPU.
    """
    fd = sock.fileno()
    clock = time.monotonic
    yield_cpu = getattr(os, "sched_yield", None)
    if fd < 1024:
        ready = [sock]

        def block(seconds: float) -> bool:
            return bool(select.select(ready, (), (), seconds)[0])
    else:
        poller = select.poll()
        poller.register(fd, select.POLLIN)

        def block(seconds: float) -> bool:
            return bool(poller.poll(math.ceil(seconds * 1000)))

    if spin <= 0 or yield_cpu is None:
        return block

    # spinning pays only when answers come within the spin (loopback peers);
    # behind a slow hop (a relay process) every spin would fail and take CPU
    # from the hop: a failed spin costs credit, a hit earns it, and without
    # credit only every 32nd wait tries again
    credit = [4, 0]  # credit, waits since the last try

    def wait(seconds: float) -> bool:
        if block(0):
            return True
        state = credit
        if state[0] <= 0:
            state[1] += 1
            if state[1] < 32:
                return block(seconds)
            state[1] = 0
        until = clock() + min(spin, seconds)
        while True:
            yield_cpu()
            if block(0):
                state[0] = min(state[0] + 1, 8)
                return True
            if clock() >= until:
                break
        state[0] -= 2
        return block(max(0.0, seconds - min(spin, seconds)))
    return wait


def transfer_socket(family: int) -> socket.socket:
    """A new UDP socket for one windowed transfer, with SOCKET_BUFFER-sized
    buffers where the kernel allows (a smaller limit only slows windows)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass
    return sock
