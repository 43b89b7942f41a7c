"""Full-duplex line chat over one TCP connection (blocking sockets + a reader thread).

Two uses, one mechanism (``DuplexChat``):

- **room mode**: a client of the ``chat`` service.  It sends ``/nick`` and
  ``/join`` first when asked to, then whatever the user types; the server's
  lines are delivered as they arrive.
- **direct mode**: the seed 002 one-to-one chat.  ``listen_one`` waits for a
  single peer (our side of the seed's server), ``connect`` dials one (the
  seed's client).  Lines are sent exactly as the seed sends them (the text
  plus ``\\n``, one ``send`` per line); a line starting with ``exit`` from
  either side ends the chat, as ``strncmp(buffer, "exit", 4)`` does in the
  seed.  Nothing requires turns: we send whenever the user types and show
  whatever arrives, and a strictly alternating seed peer still works because
  every line we send is one write it can read in one ``read``.

Incoming text is sanitized (``proto.chat.decode_line``) before it is
handed to the display, so a peer cannot drive our terminal either.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable

from inetkit.proto.chat import MAX_LINE, LineFramer, TooLong, decode_line

#: how long a blocked send may wait for the peer to take our bytes
SEND_TIMEOUT = 30.0
#: how often the reader thread checks whether it was asked to stop
POLL_INTERVAL = 0.25
#: after /quit, how long we wait for the server to close before we do
QUIT_GRACE = 5.0
#: longest incoming line we show: a relayed line is the sender's (up to
#: MAX_LINE) plus a ``<nick> `` prefix, so allow well above the send cap
MAX_INCOMING = 4 * MAX_LINE


def is_exit(text: str) -> bool:
    """The seed's end-of-chat test: the line starts with ``exit``."""
    return text.startswith("exit")


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A connected TCP socket (OSError on failure)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(SEND_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Listener:
    """Our side of the seed's chat server: bind, listen, accept one peer."""

    def __init__(self, bind: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((bind, port))
            self.sock.listen(1)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(POLL_INTERVAL)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def accept(self, stop: threading.Event | None = None, timeout: float | None = None) -> socket.socket | None:
        """The first peer (None if ``stop`` was set or ``timeout`` passed first).
        The listening socket is closed afterwards: one-to-one, as in the seed."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while stop is None or not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                conn.settimeout(SEND_TIMEOUT)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return conn
            return None
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()


class DuplexChat:
    """Send lines from any thread while a reader thread delivers incoming ones.

    ``on_line(text)`` gets every incoming line, sanitized, from the reader
    thread.  ``done`` is set when the chat is over; ``reason`` says why
    (``"peer closed"``, ``"peer sent exit"``, ``"you sent exit"``, an error).
    ``direct`` enables the seed's ``exit`` rule on incoming lines.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_line: Callable[[str], None],
        *,
        direct: bool = False,
        on_done: Callable[[], None] | None = None,
        max_line: int = MAX_INCOMING,
    ) -> None:
        self.sock = sock
        self.on_line = on_line
        self.on_done = on_done
        self.direct = direct
        self.framer = LineFramer(max_line)
        self.done = threading.Event()
        self.reason = ""
        self._ending = ""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read_loop, name="chat-reader", daemon=True)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the reader and close the socket (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2 * POLL_INTERVAL + 1)
        self.sock.close()

    def _finish(self, reason: str, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        if self._ending:
            reason, error = self._ending, None
        self.reason = reason
        self.error = error
        self.done.set()
        if self.on_done is not None:
            self.on_done()

    # -- sending ------------------------------------------------------------------
    def send_line(self, text: str) -> bool:
        """Send ``text`` + ``\\n`` as one write.  False when the chat is over
        (in direct mode a line starting with ``exit`` ends it, as in the seed)."""
        if self.done.is_set():
            return False
        data = text.encode("utf-8", "replace") + b"\n"
        ending = self.direct and is_exit(text)
        if ending:
            # set before sending: the peer may close before sendall returns
            self._ending = "you sent exit"
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            self._finish(f"send failed: {exc}", exc)
            return False
        if ending:
            self._finish("you sent exit")
            return False
        return True

    def finish_sending(self) -> None:
        """No more input (stdin EOF): half-close, keep reading until the peer closes."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    # -- receiving ------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.sock], [], [], POLL_INTERVAL)
                if not ready:
                    continue
                data = self.sock.recv(65536)
                if not data:
                    tail = self.framer.flush()
                    if tail is not None and self._deliver(tail):
                        return
                    self._finish("peer closed")
                    return
                for item in self.framer.feed(data):
                    if isinstance(item, TooLong):
                        self.on_line(f"* (an incoming line over {self.framer.max_line} bytes was dropped)")
                        continue
                    if self._deliver(item):
                        return
        except (OSError, ValueError) as exc:  # ValueError: select on a socket closed under us
            if not self._stop.is_set():
                self._finish(f"connection error: {exc}", exc if isinstance(exc, OSError) else None)
                return
        self._finish("closed")

    def _deliver(self, raw: bytes) -> bool:
        """Hand one line to the display; True when it ended the chat."""
        text = decode_line(raw)
        if self.direct and is_exit(text):
            self._finish("peer sent exit")
            return True
        self.on_line(text)
        return False


def room_preamble(nick: str | None, room: str | None) -> list[str]:
    """The lines a room client sends first: its nickname, then its room."""
    lines = []
    if nick:
        lines.append(f"/nick {nick}")
    if room:
        lines.append(f"/join {room}")
    return lines
