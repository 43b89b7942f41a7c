"""Raw-socket channels for services that move file bodies without copies.

A file service wants ``os.sendfile`` for downloads and ``recv_into`` a large
reusable buffer for uploads; asyncio streams give neither (every chunk becomes
a new ``bytes``).  A *channel* wraps the connection's socket with the few
operations such a service needs, in two flavours with the same coroutine API:

- ``AsyncChannel`` (async and iterative models): takes the stream transport's
  socket over.  Reading on the transport is paused, bytes the StreamReader had
  already buffered are handed back first, and the channel works on a ``dup``
  of the descriptor, waiting for readiness with ``add_reader``/``add_writer``
  (both asyncio's loop and uvloop support this).  ``loop.sendfile`` would
  be simpler, but uvloop (the daemon's loop) has no native implementation:
  it raises NotImplementedError, or with ``fallback=True`` copies the file
  through Python; so ``os.sendfile`` is driven by hand here.
- ``BlockingChannel`` (iterative/fork/thread via ``handle_blocking``): the
  same coroutines over a blocking socket with a timeout.  They never suspend,
  so ``run_blocking`` drives the handler coroutine to completion in one step.

One handler written as ``async def handler(channel)`` therefore serves every
model.  Timeouts raise ``TimeoutError``; a peer that resets raises
``ConnectionError``; neither is caught here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: largest count handed to one sendfile(2) call (Linux caps it near 2 GiB anyway)
SENDFILE_CHUNK = 1 << 30


class AsyncChannel:
    """A connection taken over from an asyncio stream (see module docstring)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        transport: asyncio.Transport = writer.transport  # type: ignore[assignment]  # a socket transport reads too
        transport.pause_reading()
        # Bytes the StreamReader read before we paused it belong to us now.
        # There is no public accessor for them; ``_buffer`` has been the
        # reader's buffer since asyncio's first release (3.4 .. 3.13).
        buffered = getattr(reader, "_buffer", None)
        self.pending = bytes(buffered) if buffered else b""
        if buffered:
            buffered.clear()
        self.eof_seen = bool(reader.at_eof()) and not self.pending
        raw = transport.get_extra_info("socket")
        if raw is None or transport.is_closing():
            raise ConnectionResetError("the connection closed before it was served")
        self.sock = socket.socket(fileno=os.dup(raw.fileno()))
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()

    async def _wait(self, writable: bool) -> None:
        future: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        add, remove = (self.loop.add_writer, self.loop.remove_writer) if writable else (self.loop.add_reader, self.loop.remove_reader)
        add(self.fd, ready)
        try:
            await asyncio.wait_for(future, self.timeout)
        finally:
            remove(self.fd)

    async def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0) -> int:
        """At most ``nbytes`` (default: the buffer) into ``buffer``; 0 at EOF."""
        view = memoryview(buffer)
        limit = nbytes or len(view)
        if self.pending:
            n = min(limit, len(self.pending))
            view[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n
        if self.eof_seen:
            return 0
        while True:
            try:
                return self.sock.recv_into(view, limit)
            except (BlockingIOError, InterruptedError):
                await self._wait(False)

    async def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._wait(True)
                continue
            view = view[sent:]

    async def sendfile(self, fd: int, offset: int, count: int, progress: Callable[[int], None] | None = None) -> int:
        """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset``: the kernel
        copies page cache to socket.  Returns bytes sent (short if the file shrank)."""
        sent_total = 0
        while sent_total < count:
            try:
                sent = os.sendfile(self.fd, fd, offset + sent_total, min(count - sent_total, SENDFILE_CHUNK))
            except (BlockingIOError, InterruptedError):
                await self._wait(True)
                continue
            if sent == 0:
                break  # the file is shorter than it was: the caller reports it
            sent_total += sent
            if progress is not None:
                progress(sent)
        return sent_total

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def drain(self, limit: int, seconds: float) -> int:
        """Read and drop input until EOF, ``limit`` bytes or ``seconds`` (TimeoutError)."""
        scratch = bytearray(65536)
        dropped = 0
        async with asyncio.timeout(seconds):
            while dropped < limit:
                n = await self.recv_into(scratch, min(len(scratch), limit - dropped))
                if n == 0:
                    break
                dropped += n
        return dropped

    async def offload(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work (hashing a file, listing a directory) off the loop."""
        return await self.loop.run_in_executor(None, func, *args)

    async def offload_ticking(self, func: Callable[[], T], every: float, tick: Callable[[], Awaitable[None]]) -> T:
        """``offload(func)``, awaiting ``tick()`` every ``every`` seconds until it is done
        (to tell the peer that we are still at it)."""
        future = self.loop.run_in_executor(None, func)
        while True:
            done, _ = await asyncio.wait({future}, timeout=every)
            if done:
                return future.result()
            await tick()

    def close(self) -> None:
        self.sock.close()


class BlockingChannel:
    """The same coroutine API over a blocking socket; its coroutines never suspend."""

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self.timeout = timeout
        sock.settimeout(timeout)

    async def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0) -> int:
        view = memoryview(buffer)
        return self.sock.recv_into(view, nbytes or len(view))

    async def sendall(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    async def sendfile(self, fd: int, offset: int, count: int, progress: Callable[[int], None] | None = None) -> int:
        if count == 0:
            return 0
        # socket.sendfile() uses os.sendfile and honours the socket timeout
        with os.fdopen(os.dup(fd), "rb", buffering=0) as file:
            sent = self.sock.sendfile(file, offset, count)
        if progress is not None:
            progress(sent)
        return sent

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def drain(self, limit: int, seconds: float) -> int:
        """Read and drop input until EOF, ``limit`` bytes or ``seconds`` (TimeoutError)."""
        import time

        scratch = bytearray(65536)
        dropped = 0
        deadline = time.monotonic() + seconds
        old_timeout = self.sock.gettimeout()
        try:
            while dropped < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("drain")
                self.sock.settimeout(left)
                n = self.sock.recv_into(scratch, min(len(scratch), limit - dropped))
                if n == 0:
                    break
                dropped += n
        finally:
            self.sock.settimeout(old_timeout)
        return dropped

    async def offload(self, func: Callable[..., T], *args: Any) -> T:
        return func(*args)

    async def offload_ticking(self, func: Callable[[], T], every: float, tick: Callable[[], Awaitable[None]]) -> T:
        """``func`` on a helper thread; ``tick()`` (which must not suspend either)
        every ``every`` seconds until it is done."""
        outcome: list[Any] = []

        def body() -> None:
            try:
                outcome.append((True, func()))
            except BaseException as exc:  # re-raised below, in the caller's thread
                outcome.append((False, exc))

        worker = threading.Thread(target=body, name="inetkit-offload", daemon=True)
        worker.start()
        while True:
            worker.join(every)
            if not worker.is_alive():
                break
            await tick()
        ok, value = outcome[0]
        if not ok:
            raise value
        result: T = value
        return result

    def close(self) -> None:
        """The model owns the socket and closes it."""


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a handler coroutine over a ``BlockingChannel`` to completion.

    Its awaits only reach ``BlockingChannel`` coroutines, which return without
    suspending, so one ``send(None)`` finishes it; a suspension means the
    handler awaited something else, a programming error reported as such.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a blocking handler awaited something that suspends")
