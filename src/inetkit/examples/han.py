"""Seed §12-2-3 "han": an exec'd service whose stdin/stdout is the connection.

It writes ``welcome to server, from han!`` (no NUL, no newline) and exits;
the daemon spawned it with the client socket on fd 0 and 1.
"""

from __future__ import annotations

import os
import sys

GREETING = b"welcome to server, from han!"


def main() -> int:
    try:
        os.write(1, GREETING)
    except OSError as exc:  # the client may already be gone
        print(f"han: cannot write to the client: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
