"""The fast connection-log path writes what the logging path would."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re

from inetkit import logs
from inetkit.logs import ConnectionLog


def test_plain_line_matches_the_logging_format() -> None:
    out = io.StringIO()
    ConnectionLog(out, "plain").write("echo", "127.0.0.1:5000", "async", 42, 0.1234, 3, 4, "ok")
    line = out.getvalue()
    # "%(asctime)s inetkit[%(process)d] %(levelname)s %(message)s" with the message of the logging path
    pattern = (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} inetkit\[%d\] INFO "
               r"echo 127\.0\.0\.1:5000 async pid=42 0\.123s in=3 out=4 ok\n") % os.getpid()
    assert re.fullmatch(pattern, line), line


def test_json_line_has_the_connection_fields_and_escapes() -> None:
    out = io.StringIO()
    ConnectionLog(out, "json").write('we"ird\\name', "[::1]:7", "exec", 99, 2.5, 0, 10, "exit=1")
    data = json.loads(out.getvalue())
    assert data["service"] == 'we"ird\\name' and data["peer"] == "[::1]:7" and data["pid"] == 99
    assert data["duration"] == 2.5 and data["bytes_out"] == 10 and data["outcome"] == "exit=1"
    assert data["level"] == "info" and data["time"].endswith("Z")


def test_in_a_loop_lines_are_batched_and_flushed_before_other_records() -> None:
    out = io.StringIO()
    clog = ConnectionLog(out, "plain")

    async def main() -> None:
        for i in range(3):
            clog.write("echo", f"127.0.0.1:{i}", "async", 1, 0.0, 0, 0, "ok")
        assert out.getvalue() == ""  # buffered: one write later
        await asyncio.sleep(0.3)  # FLUSH_DELAY is 0.2 s
        assert out.getvalue().count("\n") == 3

    asyncio.run(main())


def test_setup_logging_keeps_order(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    import inetkit.logs as logs

    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    monkeypatch.setattr(logs, "_connection_log", None)
    monkeypatch.setenv("INETKIT_LOG_FORMAT", "plain")  # setup_logging exports it; restored afterwards
    root = logging.getLogger("inetkit")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        logs.setup_logging("plain")

        async def main() -> None:
            clog = logs.connection_log()
            assert clog is not None
            clog.write("echo", "127.0.0.1:1", "async", 1, 0.0, 0, 0, "ok")
            logging.getLogger("inetkit.echo").warning("after the connection")

        asyncio.run(main())
        lines = out.getvalue().splitlines()
        assert "127.0.0.1:1" in lines[0] and "after the connection" in lines[1]
    finally:
        root.handlers[:], root.level, root.propagate = saved


def test_batched_plain_lines_equal_single_lines() -> None:
    clog = ConnectionLog(io.StringIO(), "plain")
    entries = [(100.25, "echo", ("127.0.0.1", 5), "async", None, 99.0, 1, 2, "ok"),
               (100.5, "echo", ("::1", 6), "fork", 77, None, 0, 0, "reset"),
               (101.75, "cat", "10.0.0.1:7", "exec", 5, 101.0, 3, 4, "exit=1")]
    # queued flat, FIELDS values a connection, the peer tuple taken apart (ConnectionLog.queue)
    flat = [value for end, service, peer, *rest in entries
            for value in (end, service, *((peer, None) if isinstance(peer, str) else peer), *rest)]
    assert len(flat) == len(entries) * logs.FIELDS
    batch = clog._plain_batch(flat, 1_000_000.0)
    assert batch == "".join(clog._format(1_000_000.0, *e) + "\n" for e in entries)
    assert "[::1]:6 fork pid=77 0.000s" in batch and f"pid={os.getpid()} 1.250s" in batch
