"""``greeting``: the chapter's iterative and concurrent servers (seed 000 §12-2-1, §12-2-2).

On accept: send ``message`` plus NUL; read the client's one C string (until
NUL, EOF or ``max_message`` bytes, however many reads it takes); log
``from client: <text>`` with the peer; close.  The seed's padding after the
NUL is left unread, as the seed server leaves it.

``linger`` (seconds, default 0) keeps the connection's worker alive that long
*after* closing the connection, the way the §12-2-2 child sleeps 5 s so that
``ps -ef`` shows it: a real ``sleep`` in the forked child (fork) or thread
(thread), an ``asyncio.sleep`` under async that blocks no other connection.
Under iterative the next client waits meanwhile, which is what iterative means.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from inetkit.io.blocking import drive_session
from inetkit.proto.greeting import (
    DEFAULT_CAP,
    ITERATIVE_GREETING,
    CMessage,
    GreetingServerSession,
)
from inetkit.services.base import ConnectionContext, Service, StreamSession
from inetkit.services.options import Option, non_negative, positive

#: bytes asked for per read under the async model
_READ_SIZE = 4096


def _no_nul(value: Any) -> str | None:
    return "must not contain a NUL byte" if "\x00" in value else None


class GreetingService(Service):
    name = "greeting"
    summary = "send a NUL-terminated greeting, log the client's one message, close (seed 12-2-1, 12-2-2)"
    transports = frozenset({"tcp"})
    tcp_models = frozenset({"iterative", "fork", "thread", "async"})
    tcp_default_model = "iterative"
    OPTIONS = {
        "message": Option(str, ITERATIVE_GREETING, help="greeting sent on accept (a NUL is appended)", check=_no_nul),
        "linger": Option(float, 0.0, help="seconds to keep the worker alive after closing (seed: 5)", check=non_negative),
        "max_message": Option(int, DEFAULT_CAP, help="most bytes read for the client's message before its NUL", check=positive),
    }

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        ctx.log.info("%s %s: send a message to client", ctx.service.name, ctx.peer_text)

        def report(message: CMessage | None) -> None:
            log_client_message(ctx, message)

        return GreetingServerSession(self.options.message, report, self.options.max_message)

    def handle_blocking(self, sock: socket.socket, ctx: ConnectionContext) -> None:
        drive_session(sock, self.open_session(ctx), ctx)
        if self.options.linger:
            # close first so the client is not held, then stay visible like the seed's child
            _close_quietly(sock)
            time.sleep(self.options.linger)

    async def handle_async(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        session = self.open_session(ctx)
        try:
            await drive_session_streams(reader, writer, session, ctx)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        if self.options.linger:
            await asyncio.sleep(self.options.linger)


def log_client_message(ctx: ConnectionContext, message: CMessage | None) -> None:
    """The seed server's ``printf("from client: %s")``, with the peer and what
    the seed would have hidden (no NUL, truncation, padding)."""
    name, peer = ctx.service.name, ctx.peer_text
    if message is None:
        ctx.log.info("%s %s: client closed without a message", name, peer)
        return
    notes = []
    if message.truncated:
        notes.append(f"no NUL in the first {len(message.text)} bytes, cut there")
    elif not message.terminated:
        notes.append("ended by EOF, no NUL")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    ctx.log.info("%s %s: from client: %s%s", name, peer, message.decoded(), suffix)


async def drive_session_streams(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: StreamSession, ctx: ConnectionContext,
) -> None:
    """Run a (non-producing) StreamSession over asyncio streams, with the
    service's idle timeout on every read.  Raises TimeoutError when idle,
    ConnectionError on reset; does not close the writer."""
    timeout = ctx.service.idle_timeout

    async def send(data: bytes) -> None:
        if data:
            writer.write(data)
            ctx.bytes_out += len(data)
            await writer.drain()

    await send(session.start())
    while not session.closing:
        data = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
        if data:
            ctx.bytes_in += len(data)
            await send(session.receive(data))
        else:
            await send(session.receive_eof())
            break
    session.connection_lost(None)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
