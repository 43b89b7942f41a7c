"""Seed §12-2-4 "bit": an exec'd service that is told its socket by number.

Usage: ``bit FD``.  It sends ``welcome to server, from bit`` plus a NUL byte
on descriptor FD, reads the client's one message (the seed client sends
``I want a Telnet service`` NUL-terminated and padded), logs the text up to
the first NUL on stderr and closes.
"""

from __future__ import annotations

import os
import socket
import sys

GREETING = b"welcome to server, from bit\x00"
#: the seed client's message is 257 bytes; read a little more than that at most
MAX_MESSAGE = 4096
TIMEOUT = 30.0


def read_message(sock: socket.socket) -> bytes:
    """Read until a NUL byte, EOF or MAX_MESSAGE bytes: one read is not a message."""
    data = b""
    while b"\x00" not in data and len(data) < MAX_MESSAGE:
        chunk = sock.recv(MAX_MESSAGE - len(data))
        if not chunk:
            break
        data += chunk
    return data.split(b"\x00", 1)[0]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: bit FD   (FD: the connected socket's descriptor number)", file=sys.stderr)
        return 2
    try:
        sock = socket.socket(fileno=int(argv[1]))
    except OSError as exc:
        print(f"bit: descriptor {argv[1]} is not a socket: {exc.strerror}", file=sys.stderr)
        return 2
    with sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.sendall(GREETING)
            text = read_message(sock)
        except OSError as exc:
            print(f"bit: connection error: {exc}", file=sys.stderr)
            return 1
    peer = os.environ.get("TCPREMOTEIP", "?")
    print(f"bit: from client {peer}: {text.decode('utf-8', 'replace')}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
