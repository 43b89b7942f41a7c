"""The daemon's control socket: a Unix stream socket, mode 0600, one JSON
request and one JSON response per connection.

Request: one line, ``{"command": "status"}`` (or ``"reload"``).
Response: one line, a JSON object; ``{"ok": false, "error": "..."}`` on failure.

Only the daemon's own user (and root) can connect: the socket is created
under a umask that leaves it 0600, and the default location is a per-user
runtime directory.  Default path (``default_control_path``), in order:
``$XDG_RUNTIME_DIR/inetkit.sock``; ``/run/inetkit.sock`` for root;
``/tmp/inetkit-UID/inetkit.sock`` (directory 0700) otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import stat
from typing import Any, Awaitable, Callable

log = logging.getLogger("inetkit.daemon")

#: largest request accepted (requests are tiny; this bounds a misbehaving client)
MAX_REQUEST = 64 * 1024
#: a client must send its request within this many seconds
REQUEST_TIMEOUT = 5.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def default_control_path() -> str:
    """Where ``inetkit serve`` and ``inetkit status`` meet when not told."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "inetkit.sock")
    if os.geteuid() == 0:
        return "/run/inetkit.sock"
    return os.path.join("/tmp", f"inetkit-{os.geteuid()}", "inetkit.sock")


def _claim(path: str) -> None:
    """Make ``path`` free for a new socket: remove a stale socket left by a
    daemon that died, refuse if a live daemon still answers there or if the
    path is something other than a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: nobody listens
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another daemon answers on {path}")


def bind_control_socket(path: str) -> socket.socket:
    """A listening, non-blocking Unix socket at ``path`` with mode 0600."""
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    _claim(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # bind() creates the file with the umask applied: never let it be
        # group/other accessible, not even for an instant
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    """Serves ``handler(request) -> response`` on the control socket."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        sock = bind_control_socket(self.path)
        self._inode = os.stat(self.path).st_ino
        try:
            self.server = await asyncio.start_unix_server(self._client, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
                if len(line) > MAX_REQUEST:
                    raise ValueError("request too long")
                request = json.loads(line or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                response = await self.handler(request)
            except (ValueError, asyncio.LimitOverrunError) as exc:
                response = {"ok": False, "error": f"bad request: {exc}"}
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return
            except Exception as exc:  # the control socket never takes the daemon down
                log.error("control request failed: %r", exc)
                response = {"ok": False, "error": f"internal error: {exc!r}"}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except (TimeoutError, OSError):
                pass
            self.server = None
        # remove the path only if it is still ours (not a newer daemon's)
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass


def request(path: str, command: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """Blocking client: send one command, return the daemon's JSON answer.
    Raises OSError when nothing answers and ValueError on a garbled reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps({"command": command, **fields}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    data = b"".join(chunks)
    if not data:
        raise ValueError("the daemon closed the control connection without answering")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError("the daemon's reply is not a JSON object")
    return reply
