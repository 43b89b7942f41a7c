"""The exec models: a program per connection, inetd style.

- ``exec`` (inetd ``nowait``, seed 12-2-3 "han"): the connection is the
  program's stdin and stdout; stderr goes to the daemon's log stream.
- ``exec-fd`` (seed 12-2-4 "bit"): the connection's descriptor number is put
  into argv wherever ``{fd}`` appears, and that descriptor stays open across exec.
- ``wait`` (inetd UDP ``wait``, how in.tftpd runs): when a datagram arrives the
  program gets the socket itself on stdin/stdout, and the daemon stops
  watching it until the program exits.

Programs are started with ``subprocess`` (fork+exec in C, no Python runs in
the child), argv never passes through a shell, and each child is reaped
through a pidfd watched by the event loop, so no zombie outlives its exit.
Children run in their own session so a terminal's Ctrl-C reaches only the
daemon, which then drains and stops them itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from inetkit.io.addresses import plain_address
from inetkit.models.accept import accept_loop
from inetkit.models.runtime import LiveConnection, ServiceRuntime
from inetkit.services.base import ConnectionContext

#: children whose waiter was cancelled (daemon stopping); reap_orphans() ends them
ORPHANS: set[subprocess.Popen[bytes]] = set()

#: a program that exits sooner than this counts as "failing at once"
QUICK_EXIT = 1.0
MAX_BACKOFF = 60.0


def build_argv(program: tuple[str, ...], fd: int | None) -> list[str]:
    """Substitute ``{python}`` (this interpreter) and ``{fd}``; nothing else."""
    out = []
    for arg in program:
        arg = arg.replace("{python}", sys.executable)
        if fd is not None:
            arg = arg.replace("{fd}", str(fd))
        out.append(arg)
    return out


def ucspi_environment(proto: str, peer: tuple[str, int] | None, local: tuple[str, int] | None) -> dict[str, str]:
    """The daemon's environment plus ucspi-tcp's connection variables."""
    env = dict(os.environ)
    env["PROTO"] = proto.upper()
    if peer is not None:
        env.update({
            "TCPREMOTEIP": peer[0], "TCPREMOTEPORT": str(peer[1]),
            "REMOTE_ADDR": peer[0], "REMOTE_PORT": str(peer[1]),
        })
    if local is not None:
        env.update({"TCPLOCALIP": local[0], "TCPLOCALPORT": str(local[1])})
    return env


def _credentials(rt: ServiceRuntime) -> dict[str, Any]:
    """Drop to the configured user/group, but only when we are root to begin with."""
    if os.geteuid() != 0:
        return {}
    creds: dict[str, Any] = {}
    if rt.config.user:
        creds["user"] = rt.config.user
    if rt.config.group:
        creds["group"] = rt.config.group
    return creds


def spawn(rt: ServiceRuntime, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    argv0 = rt.config.options.get("argv0")
    executable = argv[0]
    if argv0:
        argv = [argv0, *argv[1:]]
    return subprocess.Popen(
        argv, executable=executable, start_new_session=True, close_fds=True,
        **_credentials(rt), **kwargs,
    )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a child without a thread: its pidfd becomes readable at exit."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):
        return await loop.run_in_executor(None, proc.wait)
    done: asyncio.Future[None] = loop.create_future()
    loop.add_reader(pidfd, _resolve, done)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


class LoopingGuard:
    """inetd's "looping" guard: a program that keeps failing at once is
    started again only after a growing delay, reported in status."""

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self._announced = 0.0

    def announce(self) -> bool:
        """True once per backoff step: log the throttling once, not per
        connection held back by it."""
        if self.until == self._announced:
            return False
        self._announced = self.until
        return True

    def record(self, started: float, ended: float, returncode: int) -> None:
        if returncode != 0 and ended - started < QUICK_EXIT:
            self.failures += 1
            if self.failures >= 3:
                self.until = ended + min(MAX_BACKOFF, 0.5 * 2 ** (self.failures - 3))
        else:
            self.failures = 0
            self.until = 0.0

    def delay(self, now: float) -> float:
        return max(0.0, self.until - now)

    def status(self, now: float) -> dict[str, Any]:
        """For ``inetkit status``: engaged while new starts are being held back."""
        delay = self.delay(now)
        return {"engaged": delay > 0, "failures": self.failures, "throttled_for": round(delay, 3)}


async def serve(listener: socket.socket, rt: ServiceRuntime) -> None:
    if rt.config.model == "wait":
        await _serve_wait(listener, rt)
        return
    guard = LoopingGuard()
    rt.looping = guard
    rt.ctx.stats["looping"] = 0
    pass_fd = rt.config.model == "exec-fd"

    async def handle(conn: socket.socket) -> None:
        try:
            ctx = ConnectionContext(rt.ctx, plain_address(conn.getpeername()), plain_address(conn.getsockname()))
        except OSError:
            conn.close()
            return
        if not rt.admit(ctx):
            conn.close()
            return
        outcome = "ok"
        try:
            delay = guard.delay(time.monotonic())
            if delay:
                rt.ctx.stats["looping"] = 1
                if guard.announce():
                    rt.ctx.log.warning("%s: program keeps failing at once (%d in a row); throttled for %.1fs",
                                       rt.config.name, guard.failures, delay)
                await asyncio.sleep(delay)
            rt.ctx.stats["looping"] = 0
            conn.setblocking(True)  # programs expect ordinary blocking descriptors
            env = ucspi_environment("tcp", ctx.peer, ctx.local)
            fd = conn.fileno()
            argv = build_argv(rt.config.program, fd if pass_fd else None)
            started = time.monotonic()
            try:
                if pass_fd:
                    proc = spawn(rt, argv, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), pass_fds=(fd,))
                else:
                    proc = spawn(rt, argv, env=env, stdin=fd, stdout=fd)
            finally:
                conn.close()  # the child has its own copy; ours must go so EOF works
            rt.set_pid(ctx, proc.pid)
            try:
                code = await wait_exit(proc)
            except asyncio.CancelledError:
                ORPHANS.add(proc)
                raise
            guard.record(started, time.monotonic(), code)
            if code != 0:
                outcome = f"exit={code}"
        except OSError as exc:
            outcome = "spawn-failed"
            guard.record(time.monotonic(), time.monotonic(), 127)
            rt.ctx.log.error("%s: cannot start %s: %s", rt.config.name, rt.config.program[0], exc)
        finally:
            rt.finished(ctx, outcome)

    await accept_loop(listener, rt, handle, concurrency=rt.config.max_children)


async def _serve_wait(sock: socket.socket, rt: ServiceRuntime) -> None:
    loop = asyncio.get_running_loop()
    guard = LoopingGuard()
    rt.looping = guard
    sock.setblocking(True)  # the program reads it; we only watch readability
    fd = sock.fileno()
    local = plain_address(sock.getsockname())
    while True:
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        delay = guard.delay(time.monotonic())
        if delay:
            rt.ctx.stats["looping"] = 1
            if guard.announce():
                rt.ctx.log.warning("%s: program keeps failing at once (%d in a row); throttled for %.1fs",
                                   rt.config.name, guard.failures, delay)
            await asyncio.sleep(delay)
        rt.ctx.stats["looping"] = 0
        ctx = ConnectionContext(rt.ctx, ("", 0), local)
        rt.counters.accepted += 1
        started = time.monotonic()
        try:
            proc = spawn(rt, build_argv(rt.config.program, None), env=ucspi_environment("udp", None, local), stdin=fd, stdout=fd)
        except OSError as exc:
            rt.counters.errors += 1
            rt.ctx.log.error("%s: cannot start %s: %s", rt.config.name, rt.config.program[0], exc)
            guard.record(started, time.monotonic(), 127)
            await asyncio.sleep(max(guard.delay(time.monotonic()), 0.1))
            continue
        rt.live[id(ctx)] = _live(proc.pid)
        try:
            code = await wait_exit(proc)
        except asyncio.CancelledError:
            ORPHANS.add(proc)  # the daemon is stopping: reaped by reap_orphans()
            raise
        finally:
            rt.live.pop(id(ctx), None)
        guard.record(started, time.monotonic(), code)
        rt.ctx.log.info("%s wait pid=%d %.3fs exit=%d", rt.config.name, proc.pid, time.monotonic() - started, code)


def _live(pid: int) -> LiveConnection:
    return LiveConnection(("", 0), time.monotonic(), pid)


async def reap_orphans(grace: float) -> None:
    """SIGTERM every orphaned child's process group, wait up to ``grace``,
    SIGKILL the rest, and reap them all: no zombie outlives the daemon's stop."""
    procs = [p for p in ORPHANS if p.poll() is None]
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ORPHANS.clear()
