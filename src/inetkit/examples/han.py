"""Seed §12-2-3 "han": an exec'd service whose stdin/stdout is the connection.

Usage: ``han [--linger SECONDS]``.  It writes ``welcome to server, from han!``
(no NUL, no newline, as the seed's ``printf``) and exits; the daemon spawned it
with the client socket on fd 0 and 1, so EOF tells the client the text is whole.

The seed's han then sleeps 5 s "so that the process list shows it".  With
``--linger`` this one does too, but only after closing the connection, so the
client is not kept waiting (the seed's buffered printf reached the client
only when han exited, 5 s later).
"""

from __future__ import annotations

import os
import sys
import time

GREETING = b"welcome to server, from han!"


def _linger(argv: list[str]) -> float | None:
    """Seconds from ``--linger N`` (0 when absent); None for bad usage."""
    if not argv:
        return 0.0
    if len(argv) == 2 and argv[0] == "--linger":
        try:
            value = float(argv[1])
        except ValueError:
            return None
        return value if 0 <= value <= 3600 else None
    return None


def main(argv: list[str] | None = None) -> int:
    linger = _linger(sys.argv[1:] if argv is None else argv)
    if linger is None:
        print("usage: han [--linger SECONDS]   (stdin/stdout: the connection)", file=sys.stderr)
        return 2
    try:
        view = memoryview(GREETING)
        while view:  # a socket may take a write in pieces
            view = view[os.write(1, view):]
    except OSError as exc:  # the client may already be gone
        print(f"han: cannot write to the client: {exc.strerror}", file=sys.stderr)
        return 1
    if linger:
        # the connection ends here (the daemon closed its copy); the process stays for `ps`
        for fd in (0, 1):
            try:
                os.close(fd)
            except OSError:
                pass
        time.sleep(linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
