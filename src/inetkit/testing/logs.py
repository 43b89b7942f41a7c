"""Capture an in-process daemon's log lines in a test.

``running_service`` runs the daemon in a thread of the test process, so its
``inetkit.*`` loggers can be listened to directly; lines are written from the
daemon's thread, hence ``wait_for`` polls (bounded) instead of reading once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager


class LogLines(logging.Handler):
    """Every message logged, in order (``lines``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        """The first line containing ``text``, waiting up to ``timeout``
        seconds for it; AssertionError (listing the lines) if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"no log line containing {text!r} in {self.lines!r}")
            time.sleep(0.01)


@contextmanager
def captured_log(name: str = "inetkit") -> Iterator[LogLines]:
    """Listen to logger ``name`` (at INFO) for the duration of the block."""
    handler = LogLines()
    logger = logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
