"""The ``fork`` model (seed 12-2-2): a process per connection -- the daemon side.

Forking is only safe in a process that runs no other threads and no event
loop, so the daemon never forks itself: it execs a small worker
(``inetkit.worker --model fork``, the loop in ``models/forkworker.py``) that
owns the listener and does nothing but accept, fork, and reap.  In that worker
the parent closes its copy of each connection at once, every child is reaped
from SIGCHLD, and when ``max_children`` are alive it stops accepting until one
exits (the clients wait in the backlog).  The daemon supervises the worker,
restarts it if it dies, and replays the events it reports (``EventReader``)
so ``inetkit status`` shows its connections and child PIDs.

The worker is started lean when it can be (``lean_worker_path``): ``python
-S -m inetkit.worker`` with the daemon's ``sys.path`` handed over, so no
``site``/``.pth`` processing loads modules into a process whose memory every
child copies.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable

import inetkit
from inetkit.config.schema import ServiceConfig
from inetkit.models.forkexec import wait_exit
from inetkit.models.runtime import ServiceRuntime

#: where a lean worker finds the daemon's ``sys.path`` and its own ``PYTHONPATH``
#: (read, and removed, first thing by ``inetkit.worker``)
WORKER_PATH_ENV = "INETKIT_WORKER_SYS_PATH"
WORKER_PYTHONPATH_ENV = "INETKIT_WORKER_PYTHONPATH"
#: set beside ``LD_BIND_NOW`` when the daemon added it (``fork_worker_environment``):
#: the fork worker then removes both again (``forkworker.forget_bind_now``)
WORKER_BIND_NOW_ENV = "INETKIT_WORKER_BIND_NOW"

# -- daemon side ----------------------------------------------------------------


def worker_command(model: str, config: ServiceConfig, fd: int, *, events: int | None = None,
                   grace: float | None = None, connection_log: bool = True, lean: bool = False) -> list[str]:
    """The worker's argv: ``python -m inetkit.worker ...``; ``lean`` adds
    ``-S`` (no ``site``: start it with ``lean_worker_environment``)."""
    argv = [sys.executable, *(["-S"] if lean else []), "-m", "inetkit.worker",
            "--model", model, "--fd", str(fd), "--spec", json.dumps(config.to_json())]
    if events is not None:
        argv += ["--events", str(events)]
    if grace is not None:
        argv += ["--grace", str(grace)]
    if not connection_log:
        argv.append("--no-connection-log")
    return argv


def lean_worker_path(service_module: str | None) -> list[str] | None:
    """The ``sys.path`` a ``python -S`` worker needs to import inetkit and the
    service's module exactly as this process does (this process's path, after
    ``site`` ran), or None when a plain path cannot find one of them (an import
    hook installed by a ``.pth`` file, as some editable installs do) or the
    path cannot travel in an environment variable: the worker then starts
    with ``site`` as usual."""
    path = [p for p in sys.path if isinstance(p, str)]
    if any(os.pathsep in p for p in path):
        return None
    for name in {"inetkit", (service_module or "inetkit").partition(".")[0]}:
        if name in sys.builtin_module_names:
            continue
        try:
            found = importlib.machinery.PathFinder.find_spec(name, path)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return None
    return path


def lean_worker_environment(path: list[str]) -> dict[str, str]:
    """The environment for a ``python -S -m inetkit.worker``: ``PYTHONPATH``
    names only the folder holding this inetkit (so ``-m`` finds it); the
    worker replaces its ``sys.path`` with ``path`` before importing anything
    else, and puts ``PYTHONPATH`` back as it was (``inetkit.worker``)."""
    env = dict(os.environ)
    env[WORKER_PATH_ENV] = os.pathsep.join(path)
    previous = env.pop("PYTHONPATH", None)
    if previous is not None:
        env[WORKER_PYTHONPATH_ENV] = previous
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(inetkit.__file__)))
    return env


def fork_worker_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The fork worker's environment: ``env`` (default: this process's) plus
    ``LD_BIND_NOW=1``, so the dynamic loader resolves every library function
    when the worker starts.  Bound lazily, a function first called in a
    forked child (``_exit`` is called in children only) is resolved there, in
    every child: the loader's code and tables faulted in and the resolved
    address written, a copy-on-write fault, each time (~8 faults per
    connection measured).  A variable already set by the user is left as it
    is; one added here is removed by the worker once it has started, so
    nothing a service runs inherits it."""
    env = dict(os.environ if env is None else env)
    if "LD_BIND_NOW" not in env:
        env["LD_BIND_NOW"] = "1"
        env[WORKER_BIND_NOW_ENV] = "1"
    return env


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
        # the fork worker's memory is copied into every child: start it lean
        lean_path = lean_worker_path(type(rt.service).__module__ if rt.service else None) if model == "fork" else None
        try:
            proc = subprocess.Popen(
                worker_command(model, rt.config, listener.fileno(), events=wfd, grace=grace,
                               connection_log=rt.connection_log, lean=lean_path is not None),
                env=(fork_worker_environment(lean_worker_environment(lean_path) if lean_path is not None else None)
                     if model == "fork" else None),
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
