"""Logging setup: plain lines or JSON objects on stderr.

Per-connection records carry their fields in ``record.conn`` so the JSON form
gets them as keys rather than as text to parse.

The one-line-per-connection log is the hottest log path (a short-connection
service writes one per connection), so once ``setup_logging`` has run it
bypasses the ``logging`` module: ``ConnectionLog`` formats the line itself
(the timestamp text is cached per second), and inside an event loop it
buffers lines and writes them in one batch on the next flush (at most
``FLUSH_DELAY`` later, or as soon as any other log line is written, so the
order of lines in the log is kept).  Outside an event loop (the fork model's
children, which leave with ``os._exit``) each line is written at once.
Measured cost: from about 35 us to under 1 us of daemon CPU per connection.
Without ``setup_logging`` (in-process tests, library use) the lines go
through ``logging`` as ordinary records.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

_FORMAT_ENV = "INETKIT_LOG_FORMAT"
#: longest a buffered connection line waits before it is written (seconds)
FLUSH_DELAY = 0.2
#: buffered lines beyond which a batch is written at once
MAX_BUFFERED = 512
#: values queued per connection (``ConnectionLog.queue``)
FIELDS = 10


def _entries(flat: list[Any]) -> Any:
    """The queued connections, FIELDS values at a time (zip reuses its tuple)."""
    it = iter(flat)
    return zip(*[it] * FIELDS)


_SAFE = re.compile(r"[\w .:\[\]%=/+-]*\Z")

# C0 controls (newline included), DEL, C1 and the bidi overrides, shown as escapes
# in plain log lines: text a peer sent (a greeting, a datagram) must not be able to
# start a forged log line or drive the operator's terminal (CWE-117).
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS.update({c: f"\\u{c:04x}" for c in [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def printable(text: str) -> str:
    """``text`` with control characters replaced by visible escapes (one line)."""
    return text.translate(_CONTROLS)


class PlainFormatter(logging.Formatter):
    """The plain line format; the message part is made printable (tracebacks,
    appended after it, keep their newlines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def _q(text: str) -> str:
    """A JSON string literal; plain text (names, addresses) skips json.dumps."""
    return f'"{text}"' if _SAFE.match(text) else json.dumps(text, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        conn = getattr(record, "conn", None)
        if conn:
            data.update(conn)
        return json.dumps(data, ensure_ascii=False)


class ConnectionLog:
    """Writes connection lines in the same format as the logging setup,
    without a LogRecord, a lock or a write per line.

    Plain lines (the default) cost the least when the per-line work is done
    by C code: ``queue`` appends the line's values, in the order of its
    ``%`` template, to one flat list; lines come in runs of one template
    (``_LINE`` for ``queue``'s, a baked one for ``InstantLines``'), and a
    flush formats the whole batch with a single ``%`` of the runs'
    templates repeated.
    The wall-clock text ("2026-11-22 02:17:30,808") is made once per
    millisecond, not per line.  Measured inside a busy daytime daemon
    (perf_counter around the calls): about 0.75 us to queue a line and
    0.4 us to format and write it, from 0.8 + 1.4 us with a format call
    per line at flush (the C ``%`` does the per-line work in one call).
    JSON lines queue their fields and are formatted one by one at flush.
    """

    def __init__(self, stream: TextIO, fmt: str) -> None:
        self.stream = stream
        self.json = fmt == "json"
        #: the queued lines' values, flat: plain, those of their run's template
        #: (see ``marks``); JSON, FIELDS a connection.  Never replaced, only
        #: emptied: InstantLines keep its bound ``extend``.
        self.buffer: list[Any] = []
        #: plain lines come in runs of one ``%`` template (``_LINE``, or an
        #: instant line's with its constant text baked in): per run, flat, its
        #: template, the index in ``buffer`` where its values start and the
        #: number of values a line has
        self.marks: list[Any] = []
        #: who wrote the last run (this log for ``_LINE``, or an InstantLines)
        self._run_owner: object = None
        self.timer: asyncio.TimerHandle | None = None
        #: the InstantLines writing into this log's batch, by (service, model)
        self._instant: dict[tuple[str, str], InstantLines] = {}
        self._second = -1
        self._stamp = ""
        #: the wall-clock text of the current millisecond, and when it ends
        self._time_text = ""
        self._next_ms = 0.0
        self._heads: dict[tuple[str, str], tuple[str, str]] = {}
        #: (service, model) -> the plain line's constant pieces, this millisecond
        self._parts: dict[tuple[str, str], tuple[str, str, str]] = {}
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _refresh(self, second: int) -> None:
        """The timestamp text changes once a second: format it then, not per line."""
        self._second = second
        if self.json:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        else:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))

    def _advance(self, now: float) -> None:
        """A new millisecond: the plain lines' time text."""
        ms = int(now * 1000)
        second = ms // 1000
        if second != self._second:
            self._refresh(second)
        self._time_text = "%s,%03d" % (self._stamp, ms - second * 1000)
        self._parts = {}
        self._next_ms = (ms + 1) / 1000

    def _forked(self) -> None:
        # a fork child writes its own lines at once, under its own PID
        self.pid = os.getpid()
        self._heads.clear()
        self._parts = {}
        self.buffer.clear()
        self.marks.clear()
        self._run_owner = None
        self.timer = None
        for lines in self._instant.values():
            lines.until, lines.template = 0.0, ""  # remade with this PID

    def _new_parts(self, service: str, model: str) -> tuple[str, str, str]:
        """The constant pieces of a plain line this millisecond: the time and
        the service ("2026-11-22 02:17:30,808 inetkit[7] INFO daytime "), the
        model with this process's PID, and the model alone (a child's PID
        follows it)."""
        head = self._heads.get((service, model)) or self._head(service, model)
        parts = self._parts[(service, model)] = (self._time_text + head[0], f"{head[1]}{self.pid}", head[1])
        return parts

    def _head(self, service: str, model: str) -> tuple[str, str]:
        # names come from the config; made printable once, not per line
        head = self._heads[(service, model)] = (f" inetkit[{self.pid}] INFO {printable(service)} ",
                                                f" {printable(model)} pid=")
        return head

    def line(self, now: float, service: str, peer: str | tuple[str, int], model: str, pid: int | None,
             duration: float | None, bytes_in: int, bytes_out: int, outcome: str) -> str:
        """One line, without its newline, for a connection logged at wall-clock
        time ``now``; ``pid`` None means this process, ``duration`` None 0."""
        if not isinstance(peer, str):  # (host, port)
            peer = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        if not pid:
            pid = self.pid
        duration = duration or 0.0
        second = int(now)
        if second != self._second:
            self._refresh(second)
        millis = int((now - second) * 1000)
        if self.json:
            message = f"{service} {peer} {model} pid={pid} {duration:.3f}s in={bytes_in} out={bytes_out} {outcome}"
            # as the logging path's JSON: the connection's fields, "pid" being
            # the process that served it
            return (f'{{"time": "{self._stamp}.{millis:03d}Z", "level": "info", '
                    f'"logger": {_q("inetkit." + service)}, "pid": {pid}, '
                    f'"message": {_q(message)}, "service": {_q(service)}, "peer": {_q(peer)}, "model": {_q(model)}, '
                    f'"duration": {round(duration, 6)}, "bytes_in": {bytes_in}, "bytes_out": {bytes_out}, '
                    f'"outcome": {_q(outcome)}}}')
        head = self._heads.get((service, model)) or self._head(service, model)
        return (f"{self._stamp},{millis:03d}{head[0]}{peer}{head[1]}{pid} {duration:.3f}s "
                f"in={bytes_in} out={bytes_out} {outcome}")

    def _format(self, offset: float, end: float, service: str, peer: str | tuple[str, int], model: str,
                pid: int | None, started: float | None, bytes_in: int, bytes_out: int, outcome: str) -> str:
        """``line`` for a connection that ended at monotonic ``end`` (``offset``
        turns monotonic into wall-clock time) and started at ``started``."""
        return self.line(end + offset, service, peer, model, pid, end - started if started is not None else None,
                         bytes_in, bytes_out, outcome)

    def queue(self, service: str, peer: str | tuple[str, int], model: str, pid: int | None,
              duration: float | None, bytes_in: int, bytes_out: int, outcome: str) -> None:
        """Log one connection that just ended after ``duration`` seconds
        (None: too short to say); ``pid`` None means this process; ``peer``
        is (host, port) or its "host:port" text.  In an event loop only the
        values are queued (see the class doc); outside one (a forked child,
        which leaves with ``os._exit``) the line is written at once.

        The values go into one flat list of plain values, never a tuple per
        connection: hundreds of queued containers would each be tracked by
        the garbage collector, make its young-generation passes run more
        often and scan them all each time (measured: about 1.3 us per
        connection, more than the formatting)."""
        if self.timer is None and not self._arm_flush():
            self._emit(self.line(_wall(), service, peer, model, pid, duration, bytes_in, bytes_out, outcome) + "\n")
            return
        now = _wall()
        port: int | str
        if isinstance(peer, str):
            host, _, port = peer.rpartition(":")
        else:
            host, port = peer
            if ":" in host:
                host = f"[{host}]"
        if self.json:
            self.buffer += (now, service, host, port, model, pid, duration, bytes_in, bytes_out, outcome)
            if len(self.buffer) >= _JSON_BATCH:
                self.flush()
            return
        if now >= self._next_ms:
            self._advance(now)
        parts = self._parts.get((service, model)) or self._new_parts(service, model)
        # a float's %.3f costs ~0.2 us in C: most connections of a busy
        # short-connection service are under half a millisecond, one string
        if self._run_owner is not self:
            self.start_run(self, _LINE, _LINE_FIELDS)
        buffer = self.buffer
        buffer += (parts[0], host, port, parts[1] if not pid else "%s%d" % (parts[2], pid),
                   _NO_TIME if duration is None or duration < 0.0005 else "%.3f" % duration,
                   bytes_in, bytes_out, outcome)
        if len(buffer) >= BATCH_VALUES:
            self.flush()

    def start_run(self, owner: object, template: str, fields: int) -> None:
        """The next plain lines, until another run starts, are ``template``'s
        (``fields`` values each), written by ``owner``."""
        previous = self._run_owner
        if isinstance(previous, InstantLines):
            previous.until = 0.0  # its next line starts a run again
        self._run_owner = owner
        self.marks += (template, len(self.buffer), fields)

    def instant_lines(self, service: str, model: str) -> InstantLines:
        """The lines of ``service``'s connections that this process served
        whole within one event-loop callback (see ``InstantLines``); one per
        service and model, however often asked (a reload makes new runtimes)."""
        lines = self._instant.get((service, model))
        if lines is None:
            lines = self._instant[(service, model)] = InstantLines(self, service, model)
        return lines

    def _arm_flush(self) -> bool:
        """The first line of a batch: schedule its flush (False: no event
        loop here to flush later)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.timer = loop.call_later(FLUSH_DELAY, self.flush)
        return True

    def write(self, service: str, peer: str | tuple[str, int], model: str, pid: int, duration: float,
              bytes_in: int, bytes_out: int, outcome: str) -> None:
        """Log one connection that just ended after ``duration`` seconds."""
        self.queue(service, peer, model, pid, duration, bytes_in, bytes_out, outcome)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for lines in self._instant.values():
            lines.until = 0.0  # their next line arms the next flush and starts a run
        self._run_owner = None
        values, marks = self.buffer, self.marks
        if not values:
            marks.clear()
            return
        # the lists are kept (InstantLines hold their bound methods), emptied
        if self.json:
            line = self.line
            data = "".join([
                line(now, service, f"{host}:{port}", model, pid, duration, bytes_in, bytes_out, outcome) + "\n"
                for now, service, host, port, model, pid, duration, bytes_in, bytes_out, outcome
                in _entries(values)])
        else:
            ends = marks[1::3][1:] + [len(values)]
            data = "".join([template * ((end - start) // fields) for template, start, fields, end
                            in zip(marks[::3], marks[1::3], marks[2::3], ends)]) % tuple(values)
        values.clear()
        marks.clear()
        self._emit(data)

    def _emit(self, data: str) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stderr must not take a connection down


class InstantLines:
    """Connection lines of one service's instant connections (served whole
    by this process within one event-loop callback: ``models/instant.py``):
    no child PID, no duration, so within one millisecond such lines differ
    only in the peer (and rarely in sizes or outcome).

    Why a writer of its own: for the shortest connections the line is a
    noticeable part of the daemon's work (issue 3 wants <= 5 %).  So it
    keeps a ``%`` template with everything but the peer already in it
    (time, service, model, PID, sizes, outcome), remade when the
    millisecond, the sizes or the outcome change.  Each (re)made template
    starts a run of lines in the log's batch (``renew``); a line is then
    only its peer's two values appended to the batch, in order with every
    other line.  The instant path inlines ``add`` for its common
    case (see ``serve_instant``): while ``now < until`` and the reply size
    equals ``ok_bytes_out`` the run goes on.  Measured in-process: 0.39 us
    a line, queue and write, against 0.78 us through ``ConnectionLog.queue``;
    in the daemon (perf, async daytime) about 0.6 us a connection."""

    __slots__ = ("log", "service", "model", "add_values", "template", "until", "key", "ok_bytes_out")

    def __init__(self, log: ConnectionLog, service: str, model: str) -> None:
        self.log, self.service, self.model = log, service, model
        #: appends to the log's batch (a list never replaced, only emptied)
        self.add_values = log.buffer.extend
        self.template = ""
        #: when ``template``'s millisecond ends (0: remake it at the next line)
        self.until = 0.0
        self.key: tuple[int, int, str] = (-1, -1, "")
        #: the reply size ``template`` is for, if it is a clean (in=0, "ok") line; else -1
        self.ok_bytes_out = -1

    def renew(self, now: float, bytes_in: int, bytes_out: int, outcome: str) -> None:
        """Start a run of lines at ``now`` with these sizes and outcome (the
        template is remade if the millisecond or they changed); arms the
        log's next flush."""
        log = self.log
        if log.timer is None:
            log._arm_flush()
        if now >= log._next_ms:
            log._advance(now)
        key = (bytes_in, bytes_out, outcome)
        if self.key != key or not self.template.startswith(log._time_text):
            parts = log._parts.get((self.service, self.model)) or log._new_parts(self.service, self.model)
            # the constant text goes into a template: a '%' in it must stay text
            self.template = "%s%%s:%%s%s %ss in=%d out=%d %s\n" % (
                parts[0].replace("%", "%%"), parts[1].replace("%", "%%"), _NO_TIME, bytes_in, bytes_out,
                outcome.replace("%", "%%"))
            self.key = key
            self.ok_bytes_out = bytes_out if bytes_in == 0 and outcome == "ok" else -1
        log.start_run(self, self.template, 2)
        self.until = log._next_ms

    def add(self, peer: tuple[str, int], bytes_in: int, bytes_out: int, outcome: str) -> None:
        """One connection's line; ``peer`` a plain (host, port)."""
        log = self.log
        if log.json or (log.timer is None and not log._arm_flush()):
            log.queue(self.service, peer, self.model, None, None, bytes_in, bytes_out, outcome)
            return
        now = _wall()
        if now >= self.until or self.key != (bytes_in, bytes_out, outcome):
            self.renew(now, bytes_in, bytes_out, outcome)
        host = peer[0]
        self.add_values((f"[{host}]", peer[1]) if ":" in host else peer)
        if len(log.buffer) >= BATCH_VALUES:
            log.flush()


#: the plain connection line's template; its values are those
#: ``ConnectionLog.queue`` appends (the host of an IPv6 peer in brackets)
_LINE = "%s%s:%s%s %ss in=%d out=%d %s\n"
_LINE_FIELDS = _LINE.count("%")
#: queued plain values at which a batch is written at once (512 instant lines)
BATCH_VALUES = MAX_BUFFERED * 2
_JSON_BATCH = MAX_BUFFERED * FIELDS
#: a duration that %.3f shows as zero
_NO_TIME = "0.000"
_wall = time.time

_connection_log: ConnectionLog | None = None


def connection_log() -> ConnectionLog | None:
    """The fast connection log, once ``setup_logging`` has configured one."""
    return _connection_log


def flush_connection_log() -> None:
    if _connection_log is not None:
        _connection_log.flush()


class _OrderedHandler(logging.StreamHandler):
    """Writes pending connection lines before its own, so the log stays in order."""

    def emit(self, record: logging.LogRecord) -> None:
        if _connection_log is not None and _connection_log.buffer:
            _connection_log.flush()
        super().emit(record)


def setup_logging(fmt: str | None = None, level: int = logging.INFO) -> None:
    """Configure the ``inetkit`` logger once.  Worker processes inherit the
    format through the environment so every line of a daemon looks the same."""
    global _connection_log
    fmt = fmt or os.environ.get(_FORMAT_ENV, "plain")
    os.environ[_FORMAT_ENV] = fmt
    handler = _OrderedHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s inetkit[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("inetkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if _connection_log is None:
        atexit.register(flush_connection_log)
    else:
        _connection_log.flush()
    _connection_log = ConnectionLog(sys.stderr, fmt)
