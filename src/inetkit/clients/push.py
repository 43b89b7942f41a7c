"""Blocking client of the ``file-push`` service (the lecture-004 file client).

Connect, receive until the server half-closes (EOF), store the bytes, then
answer ``"Thank you\\n"`` and close: the seed's exchange, byte for byte.  The
bytes go to ``OUTPUT.part`` and are renamed to ``OUTPUT`` only after a clean
EOF, so a reset or a timeout never leaves a truncated file under the name.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

from inetkit.clients.files import TransferError, _connect, _write_all

REPLY = b"Thank you\n"
BUFFER = 1 << 20


def push_get(
    host: str,
    port: int,
    output: str,
    *,
    reply: bytes = REPLY,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Receive the pushed file into ``output`` (``-``: standard output); returns its size."""
    to_stdout = output == "-"
    part = None if to_stdout else output + ".part"
    try:
        if part is None:
            sys.stdout.flush()
            out_fd = sys.stdout.buffer.fileno()
        else:
            out_fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise TransferError(f"cannot write {output}: {exc.strerror}", "local") from None
    ok = False
    try:
        with _connect(host, port, timeout) as sock:
            total = _receive_to_eof(sock, out_fd, progress)
            try:
                sock.sendall(reply)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the seed's server may have closed already; the file is complete
        if part is not None:
            os.close(out_fd)
            out_fd = -1
            os.replace(part, output)
        ok = True
        return total
    except TimeoutError:
        raise TransferError("push-get: the server stopped sending (timeout); nothing kept", "timeout") from None
    except ConnectionError as exc:
        raise TransferError(f"push-get: connection lost ({exc.strerror or type(exc).__name__}); nothing kept", "protocol") from None
    except OSError as exc:
        raise TransferError(f"push-get: {exc.strerror or exc}", "local") from None
    finally:
        if part is not None:
            if out_fd >= 0:
                os.close(out_fd)
            if not ok:
                try:
                    os.unlink(part)
                except FileNotFoundError:
                    pass


def _receive_to_eof(sock: socket.socket, out_fd: int, progress: Callable[[int], None] | None) -> int:
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    total = 0
    while True:
        n = sock.recv_into(view)
        if n == 0:
            return total
        _write_all(out_fd, view[:n])
        total += n
        if progress is not None:
            progress(total)
