"""Drive a sans-IO StreamSession over a blocking socket (iterative, fork, thread).

The socket's timeout is the service's idle timeout: a peer that goes quiet
for that long is dropped.  Peer errors end only this connection; they are
returned to the model for its log line, never raised into the accept loop.
"""

from __future__ import annotations

import select
import socket
import time

from inetkit.errors import RemoteProtocolError
from inetkit.services.base import ConnectionContext, StreamSession

CHUNK = 65536


def _send(sock: socket.socket, data: bytes, ctx: ConnectionContext) -> None:
    if data:
        sock.sendall(data)
        ctx.bytes_out += len(data)


def _remaining(deadline: float, idle: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("session deadline")
    return left if idle is None else min(left, idle)


def drive_session(sock: socket.socket, session: StreamSession, ctx: ConnectionContext) -> str:
    """Run ``session`` on ``sock`` until either side ends it.

    Returns the outcome word for the connection log (``ok``, ``timeout``,
    ``reset``, ``protocol-error``).  Does not close ``sock``.
    """
    timeout = ctx.service.idle_timeout
    sock.settimeout(timeout)
    limit = ctx.service.session_timeout
    deadline = time.monotonic() + limit if limit else None
    error: BaseException | None = None
    outcome = "ok"
    shut = False
    eof = False
    try:
        _send(sock, session.start(), ctx)
        while not session.closing:
            if deadline is not None:
                # the idle timeout, shortened to what is left of the session
                timeout = _remaining(deadline, ctx.service.idle_timeout)
                sock.settimeout(timeout)
            if session.shutdown_write and not shut:
                sock.shutdown(socket.SHUT_WR)
                shut = True
            if eof and not session.producing:
                break
            if session.producing and not shut:
                readable, writable, _ = select.select([] if eof else [sock], [sock], [], timeout)
                if not readable and not writable:
                    raise TimeoutError("idle")
                if writable:
                    _send(sock, session.produce(CHUNK), ctx)
                if not readable:
                    continue
            data = sock.recv(CHUNK)
            if data:
                ctx.bytes_in += len(data)
                _send(sock, session.receive(data), ctx)
            else:
                eof = True
                _send(sock, session.receive_eof(), ctx)
    except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
        error, outcome = exc, "timeout"
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        error, outcome = exc, "reset"
    except RemoteProtocolError as exc:
        error, outcome = exc, "protocol-error"
        ctx.log.info("%s: protocol error from %s: %s", ctx.service.name, ctx.peer_text, exc)
    except OSError as exc:
        error, outcome = exc, "error"
    finally:
        session.connection_lost(error)
    return outcome
