"""Bench-only inetkit services, named in a bench config as
``handler = "bench.handlers:SleepyService"`` (the registry accepts
``module:Class`` for services outside its table; these are deliberately not
in it).

``SleepyService`` is the seed's server that does ``sleep(5)`` before
answering, shortened: each connection takes ``delay`` seconds of "work"
(200 ms by default), then gets ``done\\n`` and is closed.  It runs under
every TCP model: blocking (iterative via a thread, fork, thread) by
``time.sleep``, async by ``asyncio.sleep``.  The exec model runs
``SLEEPY_PROGRAM`` instead, which does the same as a program.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import ClassVar, Mapping

from inetkit.services.base import ConnectionContext, Service
from inetkit.services.options import Option, non_negative

REPLY = b"done\n"

#: the exec-model twin (argv, never through a shell; ``{python}`` is this interpreter)
SLEEPY_PROGRAM = ["{python}", "-S", "-c",
                  "import sys, time; time.sleep(float(sys.argv[1])); sys.stdout.write('done\\n')", "{delay}"]


class SleepyService(Service):
    name = "bench-sleepy"
    summary = "bench only: waits `delay` seconds, answers done, closes"
    tcp_models = frozenset({"iterative", "fork", "thread", "async"})
    OPTIONS: ClassVar[Mapping[str, Option]] = {
        "delay": Option(float, 0.2, help="seconds each connection takes", check=non_negative),
    }

    def handle_blocking(self, sock: socket.socket, ctx: ConnectionContext) -> None:
        time.sleep(self.options.delay)
        sock.sendall(REPLY)
        ctx.bytes_out += len(REPLY)

    async def handle_async(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        await asyncio.sleep(self.options.delay)
        writer.write(REPLY)
        ctx.bytes_out += len(REPLY)
        await writer.drain()


def sleepy_program(delay: float) -> list[str]:
    return [a.replace("{delay}", repr(delay)) for a in SLEEPY_PROGRAM]

