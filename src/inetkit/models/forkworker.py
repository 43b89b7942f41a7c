"""The ``fork`` model's worker process (seed 12-2-2): accept, fork, reap.

The daemon never forks itself (it runs threads and an event loop); it execs
``python -m inetkit.worker --model fork`` (see ``models/forking.py``), which
calls ``serve`` here: a single-threaded loop that accepts, forks one child per
connection, closes its own copy of the connection at once and reaps every
child.  With ``max_children`` alive it stops accepting until one exits (the
clients wait in the backlog).  On SIGTERM it stops accepting, gives its
children ``grace`` seconds, then sends them SIGTERM and reaps them all.

Why this module is lean (and must stay so)
-----------------------------------------
A fork copies the page tables of this process; the child then takes a
copy-on-write fault for every page it writes (Python writes a reference
count on every object it touches) and unmaps every page when it exits.  What a
connection costs is therefore roughly the number of pages a child touches
(about 3.5 us each on the 2-core VM this was measured on, daytime with 10
clients in flight), plus the fork and the exit, which grow with this
process's heap.  The first version of this worker imported asyncio,
subprocess, argparse and inetkit's logging setup (~200 modules, 14 MB of
private memory) and spent about 3 ms of CPU per connection; the lean one
about 1.4-1.5 ms (the worker ~0.3 ms, a child ~250 pages, ~1 ms), and with
the instant path below ~0.7 ms for daytime.  So:

- this module imports only the standard modules a service needs anyway
  (``socket``, ``logging`` through ``services.base``, ``json`` for the spec)
  and inetkit's small pure modules (``limits``, ``io.addresses``); never
  asyncio, subprocess or ``inetkit.logs`` (which imports asyncio);
- the daemon starts the worker with ``python -S`` when it can (``site``
  processing imports whatever ``.pth`` files ask for), passing its own
  ``sys.path`` instead (``forking.lean_worker_path``);
- ``gc.freeze()`` before the loop: a collection in a child only looks at the
  objects the child made, not at (and so never copies) the parent's; and the
  code every child runs around the service is run a few times in the parent
  first (``warm_up``), so CPython's in-place bytecode specialization happens
  once there rather than, page by copied page, in every child;
- the child's own connection log line is formatted here
  (``ConnectionLine``, the exact format of ``logs.ConnectionLog``, checked by
  a test) and other log records set up ``inetkit.logs`` only when the first
  one is emitted (``_DeferredHandler``), rare paths all;
- per-connection work in the parent is the minimum: accept (a raw fd, no
  socket object), the admission check, fork, close; the child builds the
  socket object and its context itself, on the other CPU;
- events for ``inetkit status`` go to the daemon in batches: one write per
  wakeup of the loop, not three per connection (``EventBatch``); children
  are reaped only when a SIGCHLD is pending, read from a ``signalfd`` in the
  same ``poll`` (``ForkCall.child_exit_fd``; a delivered signal, one per
  child, pushed a signal frame and ran a handler: ~8 faults per connection);
- the fork itself skips CPython's at-fork machinery when that is provably
  safe (``ForkCall``): ``os.fork()`` runs every ``os.register_at_fork`` hook in
  the child, and ``threading``'s alone (imported by ``logging``) rebuilds its
  bookkeeping in Python, about 0.4 ms of faults per connection; the daemon
  starts the worker with ``LD_BIND_NOW`` (``forking.fork_worker_environment``)
  so no library function is first resolved in a child;
- services whose answer is complete at accept time (``instant_reply``:
  daytime, time) are answered by the parent (``InstantAnswer``, once per
  second for those that say their answer only changes with the second,
  ``instant_reply_per_second``): the child only writes the prepared bytes,
  closes, writes the events line the parent also prepared and ``_exit``s
  (``answer_at_once``, warmed up in the parent like the rest).

Measured on the 2-core VM, daytime, 10 clients in flight, connection log off
(``python bench/forkfloor.py``): the instant path took a child from ~235 to
~52 minor faults and the worker from ~47 to ~43 per connection; server CPU
per connection ~1150-1350 us -> ~620-750 us (a bare Python accept/fork/_exit
loop: ~750-950 us; ``socketserver.ForkingTCPServer``: ~1700-2200 us).  What
is left is mostly the kernel's: copying the worker's ~2000 private page
table entries at each fork and tearing them down at each exit (its 8 MB of
private memory are the standard modules inetkit's code imports).

Signals: handlers only set a flag or do nothing; the loop sleeps in ``poll``
on the listener, the signalfd and a wakeup pipe (``signal.set_wakeup_fd``) so
SIGTERM (and SIGCHLD, where there is no signalfd) wakes it, and reaping
happens in the loop (raising from a handler could land inside ``waitpid``'s
bookkeeping or a logging lock).  Those signals are blocked around each fork,
so a child never runs the parent's handlers: it resets them to the defaults
and only then unblocks (a SIGTERM sent to it meanwhile then kills it, as the
drain expects).  The one exception is the instant child (see
``instant_child``), which runs for microseconds and never waits.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C half (see serve)
import _thread
import errno
import gc
import json
import logging
import operator
import os
import re
import select
import signal
import socket
import sys
import time
from typing import Any, Callable

# the default ``handle_blocking`` imports the blocking driver when first
# called: imported here, once, not in every child (a module import per child
# cost about 1000 copy-on-write faults, ~4 ms)
import inetkit.io.blocking  # noqa: F401
from inetkit.io.addresses import plain_address
from inetkit.limits import ConcurrencyLimiter, RefusalLog, SourceRateLimiter
from inetkit.models import forkhooks
from inetkit.services.base import (
    SMALL_REPLY,
    ConnectionContext,
    Service,
    ServiceContext,
    StreamSession,
    answers_per_second,
    instant_answer,
)

#: the environment variable ``inetkit.logs.setup_logging`` exports the log format in
LOG_FORMAT_ENV = "INETKIT_LOG_FORMAT"
#: outcomes that are not errors (as ``models.runtime.CLEAN_OUTCOMES``)
CLEAN_OUTCOMES = frozenset({"ok", "timeout", "reset"})
# plain ints for the ``_signal`` calls of the per-connection path (see ``serve``)
_SIGCHLD, _SIGTERM, _SIGINT = int(signal.SIGCHLD), int(signal.SIGTERM), int(signal.SIGINT)
_SIG_DFL = int(signal.SIG_DFL)
_SIG_BLOCK, _SIG_UNBLOCK = int(signal.SIG_BLOCK), int(signal.SIG_UNBLOCK)
#: signals blocked around a fork (see the module doc)
_FORK_SIGNALS = (_SIGCHLD, _SIGTERM, _SIGINT)
_sigmask = _signal.pthread_sigmask
#: the largest write the kernel keeps whole on a pipe (POSIX minimum is 512; Linux 4096)
PIPE_BUF = getattr(select, "PIPE_BUF", 512)


# -- log lines -------------------------------------------------------------------

_SAFE = re.compile(r"[\w .:\[\]%=/+-]*\Z")
# the same escapes as inetkit.logs.printable (C0, DEL, C1, bidi overrides)
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS.update({c: f"\\u{c:04x}" for c in [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def _q(text: str) -> str:
    return f'"{text}"' if _SAFE.match(text) else json.dumps(text, ensure_ascii=False)


class ConnectionLine:
    """One connection's log line, byte for byte what ``inetkit.logs``'
    ``ConnectionLog`` writes (plain or JSON, from ``INETKIT_LOG_FORMAT``),
    without importing it (it imports asyncio: see the module doc)."""

    def __init__(self, service: str, model: str, fmt: str | None = None) -> None:
        self.service = service
        self.model = model
        self.json = (fmt or os.environ.get(LOG_FORMAT_ENV, "plain")) == "json"
        # names come from the config: made printable once
        self._service_text = service.translate(_CONTROLS)
        self._model_text = model.translate(_CONTROLS)

    def format(self, now: float, peer: tuple[str, int], pid: int, duration: float,
               bytes_in: int, bytes_out: int, outcome: str, writer: int | None = None) -> str:
        """The line (with its newline) for a connection that ended at wall-clock
        ``now``; ``pid`` served it, ``writer`` (default: this process) writes it."""
        where = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        second = int(now)
        millis = int((now - second) * 1000)
        if self.json:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            message = (f"{self.service} {where} {self.model} pid={pid} {duration:.3f}s "
                       f"in={bytes_in} out={bytes_out} {outcome}")
            return (f'{{"time": "{stamp}.{millis:03d}Z", "level": "info", '
                    f'"logger": {_q("inetkit." + self.service)}, "pid": {pid}, '
                    f'"message": {_q(message)}, "service": {_q(self.service)}, "peer": {_q(where)}, '
                    f'"model": {_q(self.model)}, "duration": {round(duration, 6)}, "bytes_in": {bytes_in}, '
                    f'"bytes_out": {bytes_out}, "outcome": {_q(outcome)}}}\n')
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return (f"{stamp},{millis:03d} inetkit[{writer or os.getpid()}] INFO {self._service_text} {where} "
                f"{self._model_text} pid={pid} {duration:.3f}s in={bytes_in} out={bytes_out} {outcome}\n")

    def write(self, line: str) -> None:
        try:
            os.write(2, line.encode())
        except OSError:
            pass  # a closed or broken stderr must not take a connection down


class _DeferredHandler(logging.Handler):
    """The ``inetkit`` logger's handler until the first record: that record
    sets up ``inetkit.logs`` (the daemon's formats) and goes through it.  Log
    records other than connection lines are rare in this worker (refusal
    bursts, accept errors, a failing child), so the import is paid rarely."""

    def emit(self, record: logging.LogRecord) -> None:
        from inetkit.logs import setup_logging

        setup_logging()  # replaces this handler on the "inetkit" logger
        for handler in logging.getLogger("inetkit").handlers:
            if handler is not self:
                handler.handle(record)


def forget_bind_now() -> None:
    """Remove the ``LD_BIND_NOW`` the daemon added to this worker's
    environment (``forking.fork_worker_environment``): it did its job when
    the loader started this process, and must not reach the programs a
    service may run.  The loader keeps binding later libraries at once: it
    read the variable at start-up."""
    if os.environ.pop("INETKIT_WORKER_BIND_NOW", None) is not None:
        os.environ.pop("LD_BIND_NOW", None)


def setup_worker_logging() -> None:
    root = logging.getLogger("inetkit")
    root.handlers[:] = [_DeferredHandler()]
    root.setLevel(logging.INFO)
    root.propagate = False


# -- events for the daemon's status ----------------------------------------------------


def _json_host(host: str) -> str:
    # an IP address needs no escaping; anything else (a scope name) goes through json
    return f'"{host}"' if not host.strip("0123456789abcdefABCDEF:.") else json.dumps(host)


class EventBatch:
    """The worker's end of the daemon's events pipe (JSON lines, replayed by
    ``ServiceRuntime.apply_event``): ``open`` (with the child's PID),
    ``refused`` and ``reap`` from the parent, queued as tuples and written in
    one batch per wakeup of the loop; ``close`` (byte counts) from each child,
    written at once.

    Every write is whole lines of at most ``PIPE_BUF`` bytes on a
    non-blocking pipe, so the parent's and the children's writes never
    interleave and nobody ever stalls on a slow daemon: a write that does not
    fit is dropped (status is approximate, connections are not delayed).
    Each connection has a sequence number as its id, unique for the worker's
    life (a child's ``close`` may reach the daemon before the parent's batch
    with its ``open``; the daemon copes with either order)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        #: ("open", seq, peer, pid) / ("reap", seq, outcome) / ("refused",); None without a pipe
        self.queue: list[tuple[Any, ...]] | None = [] if fd is not None else None
        if fd is not None:
            os.set_blocking(fd, False)

    @staticmethod
    def line(event: tuple[Any, ...]) -> str:
        kind = event[0]
        if kind == "open":
            _, seq, peer, pid = event
            return f'{{"ev":"open","id":{seq},"peer":[{_json_host(peer[0])},{peer[1]}],"pid":{pid}}}\n'
        if kind == "reap":
            return f'{{"ev":"reap","id":{event[1]},"outcome":"{event[2]}"}}\n'
        return '{"ev":"refused"}\n'

    #: ``close_line(seq, 0, out, "ok").encode()`` as a template, filled in with
    #: ``% (seq, out)`` by the parent before an instant child is forked (``serve``)
    CLOSED_OK = b'{"ev":"close","id":%d,"in":0,"out":%d,"outcome":"ok"}\n'

    @staticmethod
    def close_line(seq: int, bytes_in: int, bytes_out: int, outcome: str) -> str:
        return f'{{"ev":"close","id":{seq},"in":{bytes_in},"out":{bytes_out},"outcome":"{outcome}"}}\n'

    def closed(self, seq: int, bytes_in: int, bytes_out: int, outcome: str) -> None:
        """From a child: written at once (the child is about to exit)."""
        if self.fd is not None:
            self._write(self.close_line(seq, bytes_in, bytes_out, outcome))

    def flush(self) -> None:
        queue = self.queue
        if not queue:
            return
        events = queue[:]
        queue.clear()  # in place: the accept loop holds this list
        chunk = ""
        line = self.line
        for event in events:
            text = line(event)
            if len(chunk) + len(text) > PIPE_BUF:
                self._write(chunk)
                chunk = ""
            chunk += text
        self._write(chunk)

    def _write(self, text: str) -> None:
        try:
            os.write(self.fd, text.encode())  # type: ignore[arg-type]
        except OSError:
            pass


# -- admission -------------------------------------------------------------------


class Admission:
    """Access rules, concurrency and per-source rate for new connections: the
    policy of ``ServiceRuntime.check``/``refuse`` on the shared ``limits``
    classes.  The access rules live in ``models.runtime`` (which imports the
    logging setup, hence asyncio): imported only when a service has any."""

    def __init__(self, config: Any, log: logging.Logger, events: EventBatch) -> None:
        limits = config.limits
        self.name = config.name
        self.log = log
        self.events = events
        self.rules: Any = None
        if limits.allow or limits.deny:
            from inetkit.models.runtime import AccessRules

            self.rules = AccessRules(limits.allow, limits.deny)
        self.concurrency = ConcurrencyLimiter(limits.max_connections, limits.max_per_source)
        self.rate = SourceRateLimiter(limits.rate_per_source, limits.rate_burst) if limits.rate_per_source else None
        self.refusals = RefusalLog()
        #: no rule, limit or rate: every connection is admitted and nothing
        #: needs counting (the accept loop then skips admission altogether)
        self.trivial = (self.rules is None and self.rate is None and limits.max_connections is None
                        and limits.max_per_source is None)

    def admit(self, peer: tuple[str, int], now: float) -> bool:
        host = peer[0]
        reason = None
        if self.rules is not None and not self.rules.permits(host):
            reason = "denied by access rules"
        else:
            reason = self.concurrency.check(host)
            if reason is None and self.rate is not None:
                wait = self.rate.acquire(host, now)
                if wait:
                    reason = f"rate_per_source exceeded (next allowed in {wait:.2f}s)"
        if reason is None:
            self.concurrency.acquire(host)
            return True
        if self.events.queue is not None:
            self.events.queue.append(("refused",))
        previous = self.refusals.refused(host, reason.split(" (", 1)[0], now)
        if previous is not None:
            more = f"; {previous} more refused since its last line" if previous else ""
            where = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
            self.log.warning("%s: refused %s: %s (logged once per burst%s)", self.name, where, reason, more)
        return False

    def release(self, host: str) -> None:
        self.concurrency.release(host)


# -- the fork itself ---------------------------------------------------------------


class ForkCall:
    """``fork()``, as cheap as this process allows.

    ``os.fork()`` wraps ``fork(2)`` in CPython's at-fork machinery: the
    registered ``before``/``after`` hooks, re-created interpreter locks and
    thread bookkeeping.  In a single-threaded process whose hooks are all
    known to be moot (``forkhooks``: lock re-creation, with no other thread to
    hold a lock; ``random``'s reseed, redone by ``after_in_child``) none of it
    is needed, so libc's ``fork`` is called directly, with the GIL held
    (``ctypes.PyDLL``; libc still runs its own ``pthread_atfork`` handlers).
    Whenever that cannot be proven (ctypes missing, another thread, a hook
    registered by anything else, ``forkhooks`` not installed when the process
    started) ``pick`` returns ``os.fork``.

    The fast function is libc's own, called straight from the accept loop
    (no Python wrapper frame): it returns -1 when ``fork(2)`` fails, and the
    caller then calls ``os.fork()``, which tries once more and raises the
    real error.  ctypes' ``use_errno`` would keep libc's errno instead, but
    it swaps errno into a Python-side buffer on every call, in the parent and
    in the child: one more copy-on-write fault on each side per connection.
    """

    def __init__(self, allow_fast: bool = True) -> None:
        self._libc_fork: Callable[[], int] | None = None
        self._libc: Any = None
        if allow_fast and sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.PyDLL(None)
                libc_fork = libc.fork
                libc_fork.restype = ctypes.c_int
                libc_fork.argtypes = ()
                self._libc_fork = libc_fork
                self._libc = libc
            except (ImportError, OSError, AttributeError):
                pass

    def trim(self) -> None:
        """Hand the C heap's free pages back to the kernel (``malloc_trim``):
        every page still mapped is one more entry each fork copies and each
        child's exit tears down.  Only with the fast fork's libc handle."""
        if self._libc is not None:
            try:
                self._libc.malloc_trim(0)
            except (AttributeError, OSError):
                pass

    def child_exit_fd(self) -> int | None:
        """A ``signalfd(2)`` readable while a SIGCHLD is pending (the caller
        keeps SIGCHLD blocked), or None where there is none (no libc handle,
        not Linux): the caller then takes SIGCHLD through a handler.

        Why: a handled SIGCHLD, one per child, costs the accept loop a signal
        frame pushed on its stack, the C handler, the wakeup byte and a
        Python-level handler call, about 8 copy-on-write faults per
        connection (the loop forks between any two of them); a descriptor in
        the same ``poll`` costs a read."""
        if self._libc is None:
            return None
        try:
            import ctypes

            mask = (ctypes.c_ulong * (128 // ctypes.sizeof(ctypes.c_ulong)))()  # glibc's sigset_t
            mask[0] = 1 << (_SIGCHLD - 1)
            fd = int(self._libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC))
        except (ImportError, AttributeError, OSError, ValueError):
            return None
        return fd if fd >= 0 else None

    def pick(self) -> tuple[Callable[[], int], bool]:
        """The fork function to call now, and whether it is the fast one
        (libc's: -1 on failure, then call ``os.fork()``; see the class doc)."""
        if self._libc_fork is not None and forkhooks.all_skippable() and not _thread._count():
            return self._libc_fork, True
        return os.fork, False

    @staticmethod
    def after_in_child(fast: bool) -> None:
        """What the skipped hooks would have done that matters: a fresh random
        state (each child must not replay its siblings' random numbers)."""
        if fast:
            random = sys.modules.get("random")
            if random is not None:
                random.seed()


# -- the accept/fork loop ----------------------------------------------------------


def _report_child_failure(log: logging.Logger, name: str, peer: tuple[str, int], exc: BaseException) -> None:
    """In a child: log why serving ``peer`` failed; nothing may escape (the
    child is about to ``_exit``, whatever happens here)."""
    try:
        log.error("%s: child failed for %s: %r", name,
                  f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}", exc)
    except BaseException:  # noqa: BLE001
        pass


def service_context(config: Any) -> ServiceContext:
    """The service's context, as the daemon's runtime builds it."""
    return ServiceContext(
        name=config.name, model=config.model, proto=config.proto,
        log=logging.getLogger(f"inetkit.{config.name}"),
        idle_timeout=config.limits.idle_timeout, session_timeout=config.limits.session_timeout,
    )


class InstantAnswer:
    """The parent's half of the fork model's fast path for ``instant_reply``
    services (daytime, time): the answer is computed here, before the fork,
    so the child only writes it, closes and leaves (``serve``'s
    ``instant_child``).

    Why: nearly all of a child's cost is the pages it touches (see the module
    doc).  Building a socket object, a context and a session in the child and
    running the service's code there touched ~200 pages; writing bytes that
    already exist touches a handful.  The answer is the same the child would
    have computed, from the same kind of context, at the same moment (right
    after accept), once per connection: nothing is cached across connections.

    Used only when the service answers through ``Service.handle_blocking``
    (not overridden), the listener has one local address (a wildcard bind
    would need ``getsockname`` per connection) and the answer is at most
    ``SMALL_REPLY`` bytes (it then always fits a fresh connection's send
    buffer, so the child never waits).  Anything else, including a service
    that fails, goes through the ordinary child, which behaves as before.

    What this asks of an ``instant_reply`` service is what the async model
    already does (it answers in its one process, ``models/instant.py``):
    ``open_session`` is quick and does not count on a fresh copy of the
    process per connection."""

    def __init__(self, service: Service, sctx: ServiceContext, local: tuple[str, int] | None) -> None:
        self.open_session = service.open_session
        self.sctx = sctx
        self.local = local
        kind = type(service)
        self.enabled = (local is not None and service.instant_reply
                        and kind.handle_blocking is Service.handle_blocking
                        and kind._reply_at_once is Service._reply_at_once)
        #: the service vouches that its answer changes only with the second
        #: (``instant_reply_per_second``): computed once per second, for the
        #: first connection of that second (``serve`` checks the second)
        self.per_second = self.enabled and answers_per_second(service)

    def __call__(self, peer: tuple[str, int]) -> bytes | None:
        """The answer for a connection from ``peer``, or None: serve it the ordinary way."""
        try:
            reply = instant_answer(self.open_session(ConnectionContext(self.sctx, peer, self.local)))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - the ordinary child fails the same way and logs it
            return None
        return reply if len(reply) <= SMALL_REPLY else None


class _WarmSession(StreamSession):
    """Closes at once: drives ``drive_session``'s code in the parent (see ``warm_up``)."""

    def start(self) -> bytes:
        self.closing = True
        return b""


def answer_at_once(fd: int, reply: bytes, done: bytes, events_fd: int, leave: Callable[[int], Any] = os._exit,
                   write: Callable[[int, bytes], int] = os.write,
                   close: Callable[[int], None] = os.close) -> tuple[int, BaseException | None]:
    """An instant child's whole life once forked, called by ``serve``'s loop
    straight after the fork: write ``reply`` to the connection ``fd``, close
    it, put ``done`` (its events line) on the events pipe and ``leave(0)``.

    Returns only if it could not: the count written and the exception that
    stopped it (None: the answer went out short), for ``instant_child`` to
    finish the long way.  It never raises (a forked child must never find
    its way back into the accept loop).

    A function of its own, apart from the loop, so that ``warm_up`` can run it
    in the parent (with ``leave`` a harmless built-in of the same calling
    convention): its bytecode is then specialized once there, not in every
    child (see ``warm_up``)."""
    try:
        sent = write(fd, reply)
        if sent == len(reply):
            close(fd)
            try:
                write(events_fd, done)
            except OSError:
                pass  # the daemon fell behind: status is approximate (see EventBatch)
            leave(0)
        return sent, None
    except BaseException as exc:  # noqa: BLE001 - handed to instant_child
        return 0, exc


def warm_up(sctx: ServiceContext, line: ConnectionLine | None, rounds: int = 12) -> None:
    """Run the code every child runs around the service's own (socket object,
    context, the blocking driver, log and event lines) a few times in the
    parent, harmlessly, on a socket pair.

    CPython 3.11+ rewrites a function's bytecode in place once it has run a
    few times (quickening, inline caches): code first run in the children
    would be rewritten, page by copied page, in every child.  Run here, it is
    rewritten once and the children only read it.  An optimization only: a
    failure here is ignored."""
    from inetkit.io.blocking import drive_session

    try:
        for _ in range(rounds):
            a, b = socket.socketpair()
            try:
                conn = socket.socket(a.family, a.type, a.proto, fileno=a.detach())
                ctx = ConnectionContext(sctx, plain_address(("127.0.0.1", 0)), plain_address(conn.getsockname()))
                drive_session(conn, _WarmSession(), ctx)
                conn.close()
            finally:
                a.close()
                b.close()
            EventBatch.close_line(0, ctx.bytes_in, ctx.bytes_out, "ok")
            EventBatch.line(("open", 0, ("127.0.0.1", 0), 0))
            EventBatch.line(("reap", 0, "ok"))
            if line is not None:
                line.format(time.time(), ("127.0.0.1", 0), 0, 0.0, 0, 0, "ok")
        # the instant child's path: os.WIFEXITED stands in for os._exit (a
        # built-in taking one int the same way, doing nothing here)
        scratch_r, scratch_w = os.pipe()
        try:
            for _ in range(rounds):
                a, b = socket.socketpair()
                try:
                    answer_at_once(a.detach(), b"x", b"", scratch_w, leave=os.WIFEXITED)
                finally:
                    a.close()
                    b.close()
        finally:
            os.close(scratch_r)
            os.close(scratch_w)
    except Exception:  # noqa: BLE001 - an optimization must not stop the service
        pass


def serve(listener: socket.socket, config: Any, service: Service, *, events_fd: int | None = None,
          grace: float = 10.0, connection_log: bool = True, forker: ForkCall | None = None) -> int:
    """Run the accept/fork loop on ``listener`` until SIGTERM/SIGINT, then
    drain.  Returns the process exit status.

    The per-connection path (accept, fork, close, and the child's own work)
    is written flat, with the functions it calls bound to locals and the
    ``_signal`` module used directly (``signal``'s wrappers convert every
    value to an enum, in Python): every object that path touches is a page
    the next fork makes copy-on-write again (see the module doc)."""
    forget_bind_now()
    sctx = service_context(config)
    log = sctx.log
    name = config.name
    events = EventBatch(events_fd)
    queue = events.queue
    admission = Admission(config, log, events)
    admit = None if admission.trivial else admission.admit
    line = ConnectionLine(config.name, config.model) if connection_log else None
    forker = forker or ForkCall()
    children: dict[int, tuple[int, tuple[str, int], float]] = {}
    max_children = max(1, config.max_children)
    family, type_, proto = listener.family, listener.type, listener.proto
    # an AF_INET peer address is already (host, port); others are normalized
    plain_peer = family == socket.AF_INET
    # a listener bound to one address accepts every connection on that very
    # address: the children need no getsockname() (a wildcard bind varies)
    bound = plain_address(listener.getsockname())
    local: tuple[str, int] | None = None if bound[0] in ("0.0.0.0", "::", "") else bound
    listener.setblocking(False)
    lfd = listener.fileno()
    stopping = False
    seq = 0

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    # children's exits: through a signalfd where there is one (SIGCHLD stays
    # blocked in this process; see ForkCall.child_exit_fd), else a handler
    exits_fd = forker.child_exit_fd()
    # what the loop blocks around a fork and then unblocks again: never
    # SIGCHLD while it must stay blocked for the signalfd
    parent_mask = _FORK_SIGNALS if exits_fd is None else (_SIGTERM, _SIGINT)
    if exits_fd is not None:
        _signal.signal(_SIGCHLD, _SIG_DFL)  # not SIG_IGN: that would reap them for us
        _sigmask(_SIG_BLOCK, (_SIGCHLD,))
    else:
        # SIGCHLD needs a Python-level handler for the wakeup fd to be written;
        # operator.is_ is one that does nothing, in C (no Python frame per child)
        _signal.signal(_SIGCHLD, operator.is_)
    _signal.signal(_SIGTERM, on_stop)
    _signal.signal(_SIGINT, on_stop)
    poller = select.poll()
    idle = select.poll()
    for fd in (wake_r, exits_fd):
        if fd is not None:
            poller.register(fd, select.POLLIN)
            idle.register(fd, select.POLLIN)
    poller.register(lfd, select.POLLIN)

    monotonic = time.monotonic
    close, write, _exit = os.close, os.write, os._exit
    answer = InstantAnswer(service, sctx, local)
    instant = answer if answer.enabled else None
    per_second, wall = answer.per_second, time.time
    answer_second, answer_bytes = -1, None
    # the events line of an instant child that sent its whole answer, made in
    # the parent (see instant_child); None: the child reports the long way
    done_line = EventBatch.CLOSED_OK if events_fd is not None and line is None else None

    def reap(block: bool = False) -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            block = False
            entry = children.pop(pid, None)
            if entry is None:
                continue  # not one of ours
            number, peer, started = entry
            if admit is not None:
                admission.release(peer[0])
            outcome = "ok"
            if status:
                code = os.waitstatus_to_exitcode(status)
                outcome = f"killed={-code}" if code < 0 else f"exit={code}"
                # the child logged its own line (it alone knows its byte
                # counts); only one that died without doing so is logged here
                if code < 0 and line is not None:
                    line.write(line.format(time.time(), peer, pid, time.monotonic() - started, 0, 0, outcome))
            if queue is not None:
                queue.append(("reap", number, outcome))

    DRAIN = 1024  # eight signalfd records, or wakeup bytes
    drain, readv = [bytearray(DRAIN)], os.readv

    def wait(poll: Any, timeout_ms: int | None) -> bool:
        """Sleep until something happens; True if the listener is readable.
        Drains the wakeup pipe or the signalfd (a signal arrived: reap)."""
        ready = poll.poll(timeout_ms)
        listening = False
        for fd, _ in ready:
            if fd == lfd:
                listening = True
                continue
            try:
                # into one buffer kept for the purpose: a fresh 4 KiB bytes
                # object per wakeup is fresh heap pages written (and copied)
                while readv(fd, drain) == DRAIN:
                    pass
            except BlockingIOError:
                pass
            reap()
        return listening

    def child_signals() -> None:
        # the parent's handlers go, then the signals blocked around the fork
        # come back: a SIGTERM sent meanwhile now kills this child
        _signal.set_wakeup_fd(-1)
        _signal.signal(_SIGCHLD, _SIG_DFL)
        _signal.signal(_SIGTERM, _SIG_DFL)
        _signal.signal(_SIGINT, _SIG_DFL)
        _sigmask(_SIG_UNBLOCK, _FORK_SIGNALS)

    def instant_child(fd: int, reply: bytes, peer: tuple[str, int], number: int, started: float,
                      sent: int = 0, failure: BaseException | None = None) -> None:
        """In the child of an ``instant_reply`` connection (``InstantAnswer``):
        write the answer the parent computed (the rest of it after ``sent``
        bytes, or report ``failure``: what stopped ``answer_at_once``), close,
        report, ``os._exit``.

        Deliberately bare: every page touched here is a copy-on-write fault,
        and every piece of C code run here faults its text pages in again
        (a fork copies no page table entries of shared library code), so the
        parent prepared everything, even ``done``, the events-pipe line of a
        successful connection.  No socket object, no context, no closing of
        the parent's descriptors (``_exit`` does that), and no signal
        handling of its own: its fork is not wrapped in a signal mask, so the
        parent's handlers may run here, and they are harmless (``on_stop``
        sets a flag in this copy, SIGCHLD's does nothing, the wakeup byte only
        wakes the parent once more).  A SIGTERM is thus not fatal here, and
        needs not be: this child never waits (the answer fits the empty send
        buffer, the events pipe is non-blocking), it is gone a few
        microseconds later.  Only before a connection log line (stderr may
        block) does it restore the default handlers, as ``child_main`` does,
        so that a SIGTERM from the drain ends it."""
        try:
            if failure is not None:
                raise failure
            while sent < len(reply):  # (a blocking socket: only a signal cuts a write short)
                sent += write(fd, reply[sent:])
            code, outcome = 0, "ok"
        except ConnectionError:
            code, outcome = 0, "reset"
        except BaseException as exc:  # noqa: BLE001 - nothing may escape a forked child
            code, outcome = 1, "error"
            _report_child_failure(log, name, peer, exc)
        try:
            close(fd)
            events.closed(number, 0, sent, outcome)
            if line is not None:
                child_signals()
                line.write(line.format(time.time(), peer, os.getpid(), monotonic() - started, 0, sent, outcome))
        finally:
            _exit(code)

    def child_main(fd: int, peer: tuple[str, int], number: int, started: float, fast: bool) -> None:
        """In the child: serve this one connection, then leave with
        ``os._exit`` (no interpreter teardown, no cleanup handlers)."""
        code, outcome = 0, "ok"
        conn: socket.socket | None = None
        ctx: ConnectionContext | None = None
        try:
            child_signals()
            ForkCall.after_in_child(fast)
            os.close(wake_r)
            os.close(wake_w)
            if exits_fd is not None:
                os.close(exits_fd)
            os.close(listener.detach())
            conn = socket.socket(family, type_, proto, fileno=fd)
            ctx = ConnectionContext(sctx, peer, local or plain_address(conn.getsockname()))
            service.handle_blocking(conn, ctx)
        except BaseException as exc:  # noqa: BLE001 - nothing may escape a forked child
            if isinstance(exc, (ConnectionError, TimeoutError)):
                outcome = "reset"
            else:
                code, outcome = 1, "error"
                _report_child_failure(log, name, peer, exc)
        finally:
            try:
                bytes_in = ctx.bytes_in if ctx is not None else 0
                bytes_out = ctx.bytes_out if ctx is not None else 0
                if conn is not None:
                    conn.close()
                else:
                    os.close(fd)
                events.closed(number, bytes_in, bytes_out, outcome)
                if line is not None:
                    line.write(line.format(time.time(), peer, os.getpid(), time.monotonic() - started,
                                           bytes_in, bytes_out, outcome))
            finally:
                os._exit(code)

    warm_up(sctx, line)
    # everything the parent imported and built so far is left alone by the
    # collector from now on (see the module doc)
    gc.collect()
    gc.freeze()
    forker.trim()
    # the raw fd: the parent never needs a socket object for it
    accept = listener._accept  # type: ignore[attr-defined]
    backoff = 0.01
    try:
        while not stopping:
            if queue:
                events.flush()
            if len(children) >= max_children:
                wait(idle, 1000)  # full: clients wait in the backlog until a child exits
                continue
            if not wait(poller, None) or stopping:
                continue
            fork, fast = forker.pick()
            # accept while connections are pending: one wakeup serves a burst
            while len(children) < max_children:
                try:
                    fd, addr = accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.warning("%s: accept: %s; retrying in %.2fs", name, exc.strerror, backoff)
                        wait(idle, int(backoff * 1000))
                        backoff = min(backoff * 2, 1.0)
                    break
                peer = addr if plain_peer else plain_address(addr)
                started = monotonic()
                if admit is not None and not admit(peer, started):
                    close(fd)
                    continue
                seq += 1
                reply = done = None
                if instant is not None:
                    if per_second:
                        second = int(wall())
                        if second != answer_second:
                            answer_second, answer_bytes = second, instant(peer)
                        reply = answer_bytes
                    else:
                        reply = instant(peer)
                    if reply is not None and done_line is not None:
                        done = done_line % (seq, len(reply))
                # an instant child runs no handler-sensitive code (see
                # instant_child): no signal mask around its fork
                masked = reply is None
                if masked:
                    _sigmask(_SIG_BLOCK, parent_mask)
                try:
                    pid = fork()
                    if pid < 0:  # libc's fork failed: os.fork says why (or succeeds)
                        pid = os.fork()
                except OSError as exc:
                    if masked:
                        _sigmask(_SIG_UNBLOCK, parent_mask)
                    close(fd)
                    if admit is not None:
                        admission.release(peer[0])
                    log.error("%s: fork: %s", name, exc.strerror)
                    wait(idle, int(backoff * 1000))
                    backoff = min(backoff * 2, 1.0)
                    break
                if pid == 0:
                    if done is not None:  # the shortest path: leaves the process unless it cannot
                        sent, failure = answer_at_once(fd, reply, done, events_fd)  # type: ignore[arg-type]
                        instant_child(fd, reply, peer, seq, started, sent, failure)  # type: ignore[arg-type]  # never returns
                    if reply is not None:
                        instant_child(fd, reply, peer, seq, started)  # never returns
                    child_main(fd, peer, seq, started, fast)  # never returns
                if masked:
                    _sigmask(_SIG_UNBLOCK, parent_mask)
                close(fd)
                children[pid] = (seq, peer, started)
                if queue is not None:
                    queue.append(("open", seq, peer, pid))
            else:
                continue
            backoff = 0.01
    finally:
        listener.close()
    # drain: give children the grace period, then stop them
    deadline = time.monotonic() + grace
    reap()
    events.flush()
    while children and time.monotonic() < deadline:
        wait(idle, int(max(0.0, min(0.5, deadline - time.monotonic())) * 1000))
        reap()
        events.flush()
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    while children:
        reap(block=True)
    events.flush()
    _signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    if exits_fd is not None:
        os.close(exits_fd)
        _sigmask(_SIG_UNBLOCK, (_SIGCHLD,))
    return 0
