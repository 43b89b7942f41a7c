"""A TCP proxy for tests that cuts connections after N bytes (resume tests).

``CutProxy(target, cut_after=N)`` listens on 127.0.0.1 port 0 and forwards
each accepted connection to ``target`` (a loopback address only).  For the
first ``cuts`` connections, once ``cut_after`` bytes went through in the
chosen direction (``"down"``: server to client, ``"up"``: client to server),
it forwards nothing more and resets both sides (SO_LINGER 0), as a dropped
link would (bytes still in flight may be lost with the RST); with
``reset=False`` it ends both sides with a FIN instead, so each side reads
exactly the bytes forwarded and then EOF (deterministic resume offsets).
Later connections pass through untouched.

Bounded in every way: at most ``max_connections`` connections, every socket
has a timeout, threads are daemons joined on ``close()``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from types import TracebackType

CHUNK = 65536


def _finish(sock: socket.socket) -> None:
    """End ``sock`` with a FIN both ways; the proxy closes it in ``close()``."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Abort ``sock`` with an RST, as a dropped link would: no FIN first.

    ``shutdown(SHUT_WR)`` would send a FIN (the peer would read a clean EOF,
    which protocols without a length take for a complete transfer); SHUT_RD
    sends nothing but wakes a pump thread blocked in ``recv`` on it, and the
    close with SO_LINGER 0 then sends the RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


class CutProxy:
    def __init__(
        self,
        target: tuple[str, int],
        cut_after: int | None,
        *,
        direction: str = "down",
        cuts: int = 1,
        reset: bool = True,
        max_connections: int = 16,
        timeout: float = 10.0,
    ) -> None:
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise ValueError("CutProxy forwards to loopback addresses only")
        if direction not in ("down", "up"):
            raise ValueError("direction is 'down' (server to client) or 'up'")
        self.target = target
        self.cut_after = cut_after
        self.direction = direction
        self.cuts_left = cuts
        self._end = _reset if reset else _finish
        self.max_connections = max_connections
        self.timeout = timeout
        #: bytes forwarded per connection in the cut direction, and how many were cut
        self.forwarded: list[int] = []
        self.cut_count = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.address: tuple[str, int] = self.listener.getsockname()
        self._acceptor = threading.Thread(target=self._accept_loop, name="cutproxy-accept", daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        accepted = 0
        while not self._closed.is_set() and accepted < self.max_connections:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted += 1
            client.settimeout(self.timeout)
            try:
                upstream = socket.create_connection(self.target, timeout=self.timeout)
            except OSError:
                client.close()
                continue
            with self._lock:
                cut = self.cut_after if self.cuts_left > 0 else None
                if cut is not None:
                    self.cuts_left -= 1
                index = len(self.forwarded)
                self.forwarded.append(0)
                self._sockets += [client, upstream]
            down = (upstream, client)
            up = (client, upstream)
            cut_pair, free_pair = (down, up) if self.direction == "down" else (up, down)
            for (src, dst), limit, counted in ((cut_pair, cut, index), (free_pair, None, None)):
                t = threading.Thread(target=self._pump, args=(src, dst, limit, counted, client, upstream),
                                     name="cutproxy-pump", daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None, index: int | None,
              client: socket.socket, upstream: socket.socket) -> None:
        sent = 0
        try:
            while True:
                want = CHUNK if limit is None else min(CHUNK, limit - sent)
                if want == 0:
                    with self._lock:
                        self.cut_count += 1
                    self._end(client)
                    self._end(upstream)
                    return
                data = src.recv(want)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                dst.sendall(data)
                sent += len(data)
                if index is not None:
                    with self._lock:
                        self.forwarded[index] = sent
        except OSError:
            # one side went away (or we reset it): end both directions
            self._end(client)
            self._end(upstream)

    def close(self) -> None:
        self._closed.set()
        self._acceptor.join(5)
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        for sock in sockets:
            sock.close()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
