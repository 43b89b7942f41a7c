"""The ``fork`` model (seed 12-2-2): a process per connection.

Forking is only safe in a process that runs no other threads and no event
loop, so the daemon never forks itself: it execs a small worker
(``python -m inetkit.worker --model fork``) that owns the listener and does
nothing but accept, fork, and reap.  In that worker the parent closes its copy
of each connection at once, every child is reaped from SIGCHLD, and when
``max_children`` are alive it stops accepting until one exits (the clients wait
in the backlog).  The daemon supervises the worker and restarts it if it dies.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from inetkit.config.schema import ServiceConfig
from inetkit.models.forkexec import wait_exit
from inetkit.models.runtime import ServiceRuntime

# -- daemon side ----------------------------------------------------------------


def worker_command(model: str, config: ServiceConfig, fd: int, *, events: int | None = None,
                   grace: float | None = None, connection_log: bool = True) -> list[str]:
    argv = [sys.executable, "-m", "inetkit.worker", "--model", model, "--fd", str(fd),
            "--spec", json.dumps(config.to_json())]
    if events is not None:
        argv += ["--events", str(events)]
    if grace is not None:
        argv += ["--grace", str(grace)]
    if not connection_log:
        argv.append("--no-connection-log")
    return argv


class EventReader:
    """The daemon's end of a worker's events pipe: JSON lines, one per
    admission, child PID, refusal or finished connection (see
    ``ServiceRuntime.apply_event``), replayed on the daemon's runtime so that
    ``inetkit status`` shows the worker's connections and child PIDs."""

    MAX_PENDING = 1 << 16  # a line longer than this is garbage: dropped

    def __init__(self, fd: int, rt: ServiceRuntime, worker: int) -> None:
        self.fd = fd
        self.rt = rt
        self.worker = worker
        self.pending = b""

    def on_readable(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                return
            self.pending += data
            *lines, self.pending = self.pending.split(b"\n")
            if len(self.pending) > self.MAX_PENDING:
                self.pending = b""
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.rt.apply_event(self.worker, event)


def write_events(fd: int) -> Callable[[dict[str, Any]], None]:
    """The worker's end: a function writing one event as one JSON line.
    Lines are far below PIPE_BUF, so writes from the worker and its forked
    children never interleave.  The pipe is non-blocking: if the daemon falls
    behind, an event is dropped (status is approximate) rather than stalling
    a connection."""
    os.set_blocking(fd, False)

    def emit(event: dict[str, Any]) -> None:
        try:
            os.write(fd, json.dumps(event, separators=(",", ":")).encode() + b"\n")
        except OSError:
            pass

    return emit


async def supervise_worker(listener: socket.socket, rt: ServiceRuntime, model: str, grace: float = 10.0,
                           index: int = 0) -> None:
    """Run a worker process on ``listener``; restart it if it dies, stop it on cancel.
    Its PID is kept in ``rt.ctx.stats`` as ``worker_pid`` (``worker_pidN`` for
    the N-th of several async workers)."""
    stat = "worker_pid" if index == 0 else f"worker_pid{index}"
    loop = asyncio.get_running_loop()
    backoff = 0.1
    while True:
        started = time.monotonic()
        rfd, wfd = os.pipe()
        try:
            proc = subprocess.Popen(
                worker_command(model, rt.config, listener.fileno(), events=wfd, grace=grace,
                               connection_log=rt.connection_log),
                pass_fds=(listener.fileno(), wfd), start_new_session=True,
            )
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        os.set_blocking(rfd, False)
        reader = EventReader(rfd, rt, proc.pid)
        loop.add_reader(rfd, reader.on_readable)
        rt.ctx.stats[stat] = proc.pid
        try:
            try:
                code = await wait_exit(proc)
            except asyncio.CancelledError:
                await stop_process(proc, grace)
                raise
        finally:
            reader.on_readable()  # the last events before it exited
            loop.remove_reader(rfd)
            os.close(rfd)
            rt.forget_worker(proc.pid)
        rt.ctx.log.error("%s: %s worker %d exited with %d; restarting", rt.config.name, model, proc.pid, code)
        backoff = 0.1 if time.monotonic() - started > 10 else min(backoff * 2, 10.0)
        await asyncio.sleep(backoff)


async def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` (plus a moment), then SIGKILL: the
    worker drains its children within ``grace`` and stops the rest itself."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    # one waiter task, cancelled and awaited if it times out: nothing is left
    # pending on the loop (a shielded wait_for would leave its inner task behind)
    waiter = asyncio.ensure_future(wait_exit(proc))
    try:
        await asyncio.wait({waiter}, timeout=grace + 2.0)
    finally:
        if not waiter.done():
            waiter.cancel()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and its forked children
            except OSError:
                proc.kill()
            await asyncio.gather(waiter, return_exceptions=True)
            proc.wait()


async def serve(listener: socket.socket, rt: ServiceRuntime) -> None:
    await supervise_worker(listener, rt, "fork")


# -- worker side (single-threaded, no event loop) -----------------------------------


def run_forking(listener: socket.socket, rt: ServiceRuntime, grace: float = 10.0) -> int:
    """The accept/fork loop.  Returns the process exit status.

    Signal handlers only set a flag: the loop sleeps in ``select`` on the
    listener and a wakeup pipe (``signal.set_wakeup_fd``), so SIGTERM and
    SIGCHLD wake it, and reaping and logging happen in the loop itself.
    (Raising from a handler could land anywhere, e.g. inside the logging
    module's lock, or between ``waitpid`` and the bookkeeping of the reaped
    child, and the worker then hung instead of draining.)
    """
    import gc
    import select

    import inetkit.io.blocking  # noqa: F401
    from inetkit.io.addresses import plain_address
    from inetkit.services.base import ConnectionContext

    # What a child needs is imported here, once, rather than lazily in every
    # child (the default handle_blocking imports the blocking driver: that
    # cost each connection a module import and ~1000 copy-on-write page
    # faults, ~4 ms of CPU).  gc.freeze() keeps a child's garbage collector
    # from touching, and so copying, every page the parent's objects live on.
    gc.freeze()
    service = rt.service
    assert service is not None
    children: dict[int, tuple[ConnectionContext, float]] = {}
    max_children = rt.config.max_children
    listener.setblocking(False)
    stopping = False

    def reap(block: bool = False) -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            entry = children.pop(pid, None)
            if entry is not None:
                ctx, _ = entry
                code = os.waitstatus_to_exitcode(status)
                # the child logged its own line (it alone knows its byte counts);
                # only a child that died without doing so is logged here
                rt.reaped(ctx, "ok" if code == 0 else f"killed={-code}" if code < 0 else f"exit={code}", log=code < 0)
            block = False

    def on_sigchld(signum: int, frame: object) -> None:
        pass  # the wakeup fd wakes the loop, which reaps

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, on_sigchld)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    def wait(watch: list[int], timeout: float | None) -> list[int]:
        readable, _, _ = select.select([wake_r, *watch], [], [], timeout)
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        return readable

    backoff = 0.01
    try:
        while not stopping:
            reap()
            if len(children) >= max_children:
                wait([], 1.0)  # full: clients wait in the backlog until a child exits
                continue
            if listener.fileno() not in wait([listener.fileno()], None) or stopping:
                continue
            try:
                conn, addr = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    rt.ctx.log.warning("%s: accept: %s; retrying in %.2fs", rt.config.name, exc.strerror, backoff)
                    wait([], backoff)
                    backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.01
            conn.setblocking(True)
            ctx = ConnectionContext(rt.ctx, plain_address(addr), plain_address(conn.getsockname()))
            if not rt.admit(ctx):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:  # child: serve this one connection, then leave without cleanup handlers
                code, outcome = 0, "ok"
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    listener.close()
                    service.handle_blocking(conn, ctx)
                except BaseException as exc:  # noqa: BLE001 - nothing may escape a forked child
                    if isinstance(exc, (ConnectionError, TimeoutError)):
                        outcome = "reset"
                    else:
                        rt.ctx.log.error("%s: child failed for %s: %r", rt.config.name, ctx.peer_text, exc)
                        code, outcome = 1, "error"
                finally:
                    rt.finished(ctx, outcome)
                    try:
                        conn.close()
                    finally:
                        os._exit(code)
            conn.close()
            rt.set_pid(ctx, pid)
            children[pid] = (ctx, time.monotonic())
    finally:
        listener.close()
    # drain: give children the grace period, then stop them
    deadline = time.monotonic() + grace
    reap()
    while children and time.monotonic() < deadline:
        wait([], max(0.0, min(0.5, deadline - time.monotonic())))
        reap()
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    while children:
        reap(block=True)
    signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    return 0
