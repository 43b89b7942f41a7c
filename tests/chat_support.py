"""A subprocess driven line by line, for the chat's CLI and interop tests.

Reader threads collect stdout and stderr; ``expect`` waits (bounded) until
a stream holds some text, so tests react to what a program printed instead
of sleeping.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

TIMEOUT = 10.0


class Driven:
    """Popen with pipes on all three streams and bounded waits on output."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.out = bytearray()
        self.err = bytearray()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @classmethod
    def inetkit(cls, *args: str) -> Driven:
        return cls([sys.executable, "-m", "inetkit.cli.main", *args])

    def _pump(self, stream: IO[bytes] | None, into: bytearray) -> None:
        assert stream is not None
        while True:
            chunk = stream.read1(65536)  # type: ignore[attr-defined]
            with self._cond:
                if not chunk:
                    self._cond.notify_all()
                    return
                into += chunk
                self._cond.notify_all()

    def expect(self, needle: bytes, *, stderr: bool = False, timeout: float = TIMEOUT) -> bytes:
        """Wait until the stream contains ``needle``; return the stream so far."""
        buf = self.err if stderr else self.out
        deadline = time.monotonic() + timeout
        with self._cond:
            while needle not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{needle!r} not seen in {'stderr' if stderr else 'stdout'} within {timeout}s; "
                        f"stdout={bytes(self.out)!r} stderr={bytes(self.err)!r} rc={self.proc.poll()}"
                    )
                self._cond.wait(min(left, 0.2))
            return bytes(buf)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(timeout)
        return code

    def stop(self) -> None:
        """End the process we started (SIGTERM, then SIGKILL), then close its pipes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        for t in self._threads:  # EOF reaches them once the process is gone
            t.join(TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
