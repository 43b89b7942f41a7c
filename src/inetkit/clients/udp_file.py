"""The seed's raw UDP file sender (002 practice 2 / assignment 2).

Reads the file in 1024-byte pieces, sends each as one datagram, then sends
``DONE`` and waits for the receiver's ``DONE``.  Unlike the seed it resends
``DONE`` when no answer comes (the receiver answers a repeated DONE again)
and can pace its datagrams (``delay``) so a slow receiver's socket buffer
does not overflow.

**This protocol cannot recover a lost datagram** (no sequence numbers, no
acknowledgements): a drop, a duplicate or a reordering corrupts the copy
without anyone noticing.  ``inetkit tftp put`` is the reliable way.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

CHUNK = 1024
DONE = b"DONE"


class UdpSendError(Exception):
    pass


@dataclass
class SendResult:
    bytes: int
    datagrams: int
    #: pieces that begin with b"DONE": the seed's receiver would stop there
    done_lookalikes: int
    done_attempts: int


def send_file(path: str, address: tuple[str, int], *, timeout: float = 2.0, retries: int = 2,
              delay: float = 0.0, chunk: int = CHUNK) -> SendResult:
    """Send ``path`` to ``address`` like the seed's sender; raise UdpSendError
    when the receiver never answers DONE."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sent = datagrams = lookalikes = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock, open(path, "rb") as source:
        sock.settimeout(timeout)
        sock.connect(address)
        while True:
            piece = source.read(chunk)
            if not piece:
                break
            if piece[:4] == DONE:
                lookalikes += 1
            sock.send(piece)
            sent += len(piece)
            datagrams += 1
            if delay:
                time.sleep(delay)
        for attempt in range(1, retries + 2):
            sock.send(DONE)
            try:
                reply = sock.recv(CHUNK)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                raise UdpSendError(f"nothing listens on {address[0]}:{address[1]}/udp (port unreachable)") from None
            if reply[:4] == DONE:
                return SendResult(sent, datagrams, lookalikes, attempt)
            raise UdpSendError(f"unexpected reply {reply[:32]!r} instead of DONE")
    raise UdpSendError(f"no DONE from {address[0]}:{address[1]} after {retries + 1} tries of {timeout:g} s "
                       "(the receiver may have lost datagrams or be down)")


def file_size(path: str) -> int:
    return os.stat(path).st_size
