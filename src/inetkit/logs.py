"""Logging setup: plain lines or JSON objects on stderr.

Per-connection records carry their fields in ``record.conn`` so the JSON form
gets them as keys rather than as text to parse.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_FORMAT_ENV = "INETKIT_LOG_FORMAT"

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


def setup_logging(fmt: str | None = None, level: int = logging.INFO) -> None:
    """Configure the ``inetkit`` logger once.  Worker processes inherit the
    format through the environment so every line of a daemon looks the same."""
    fmt = fmt or os.environ.get(_FORMAT_ENV, "plain")
    os.environ[_FORMAT_ENV] = fmt
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s inetkit[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("inetkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
