"""Seed §12-2-4 "bit": an exec'd service that is told its socket by number.

Usage: ``bit FD [TIMEOUT]``.  It sends ``welcome to server, from bit`` plus a NUL byte
on descriptor FD, reads the client's one message (the seed client sends
``I want a Telnet service`` NUL-terminated and padded), logs the text up to
the first NUL on stderr and closes.  A client that stays silent is dropped
after TIMEOUT seconds (default 30).
"""

from __future__ import annotations

import os
import socket
import sys

GREETING = b"welcome to server, from bit\x00"
#: the seed client's message is 257 bytes; read a little more than that at most
MAX_MESSAGE = 4096
TIMEOUT = 30.0


def read_message(sock: socket.socket) -> tuple[bytes, str]:
    """Read until a NUL byte, EOF or MAX_MESSAGE bytes: one read is not a message.

    Returns the text before the NUL and a note for the log when no NUL ended it.
    """
    data = b""
    while b"\x00" not in data and len(data) <= MAX_MESSAGE:
        chunk = sock.recv(MAX_MESSAGE + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if b"\x00" in data[: MAX_MESSAGE + 1]:
        return data.split(b"\x00", 1)[0], ""
    if len(data) > MAX_MESSAGE:
        return data[:MAX_MESSAGE], f" (no NUL in the first {MAX_MESSAGE} bytes, cut there)"
    return data, " (ended by EOF, no NUL)" if data else " (client closed without a message)"


def main(argv: list[str]) -> int:
    timeout = TIMEOUT
    try:
        if len(argv) == 3:
            timeout = float(argv[2])
            if not 0 < timeout <= 3600:
                raise ValueError(argv[2])
    except ValueError:
        argv = []
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print("usage: bit FD [TIMEOUT]   (FD: the connected socket's descriptor number)", file=sys.stderr)
        return 2
    try:
        sock = socket.socket(fileno=int(argv[1]))
    except OSError as exc:
        print(f"bit: descriptor {argv[1]} is not a socket: {exc.strerror}", file=sys.stderr)
        return 2
    with sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(GREETING)
            text, note = read_message(sock)
        except OSError as exc:
            print(f"bit: connection error: {exc}", file=sys.stderr)
            return 1
    peer = f"{os.environ.get('TCPREMOTEIP', '?')}:{os.environ.get('TCPREMOTEPORT', '?')}"
    # the seed's line, "@@ [bit] from client : %s", plus who sent it
    # escaped: the client's bytes must not forge daemon log lines (stderr is the log)
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
                    for c in text.decode("utf-8", "replace"))
    print(f"@@ [bit] from client {peer} : {shown}{note}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
