"""The fast connection-log path writes what the logging path would."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re

import pytest

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


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_batched_lines_equal_single_lines(fmt: str) -> None:
    """A batch formatted at flush (one ``%`` over joined templates for plain
    lines) reads exactly as the same connections written one by one."""
    entries = [("echo", ("127.0.0.1", 5), "async", None, 0.25, 1, 2, "ok"),
               ("echo", ("::1", 6), "fork", 77, None, 0, 0, "reset"),
               ("cat", "10.0.0.1:7", "exec", 5, 1.5, 3, 4, "exit=1"),
               ("we\"ird %s\x1b", ("fe80::1%lo", 9), "thread", None, 0.0004, 10, 20, "timeout")]
    batched, single = io.StringIO(), io.StringIO()
    clock = iter([1_000_000.0005 + i * 0.4 for i in range(len(entries))])

    async def main() -> None:
        clog = ConnectionLog(batched, fmt)
        for entry in entries:
            clog.queue(*entry)
        assert batched.getvalue() == ""  # queued, not yet written
        clog.flush()

    import unittest.mock

    with unittest.mock.patch.object(logs, "_wall", lambda: next(clock)):
        asyncio.run(main())
    clog = ConnectionLog(single, fmt)
    for i, entry in enumerate(entries):
        single.write(clog.line(1_000_000.0005 + i * 0.4, *entry) + "\n")
    assert batched.getvalue() == single.getvalue()
    text = batched.getvalue()
    assert text.count("\n") == len(entries)
    if fmt == "plain":
        assert "[::1]:6 fork pid=77 0.000s" in text and f"pid={os.getpid()} 0.250s" in text
        assert ",000 inetkit[" in text and ",400 inetkit[" in text  # the milliseconds of each line
        assert "we\"ird %s\\x1b" in text  # a service name is text, never a format
    else:
        assert [json.loads(line)["peer"] for line in text.splitlines()] == [
            "127.0.0.1:5", "[::1]:6", "10.0.0.1:7", "[fe80::1%lo]:9"]


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_instant_lines_equal_single_lines(fmt: str) -> None:
    """Lines of the instant writer (template with the constant text baked in),
    interleaved with ``queue``'s, read exactly as lines written one by one:
    the template follows the millisecond, the sizes and the outcome, brackets
    an IPv6 host, and a '%' in a name stays text."""
    # (wall clock, peer, bytes_in, bytes_out, outcome); None: a queue() line between
    steps = [(1_000_000.0001, ("127.0.0.1", 5), 0, 26, "ok"),
             (1_000_000.0002, ("127.0.0.2", 6), 0, 26, "ok"),  # same millisecond, same template
             (1_000_000.0003, None, 0, 0, ""),
             (1_000_000.0004, ("::1", 7), 0, 26, "ok"),
             (1_000_000.0005, ("127.0.0.1", 8), 0, 4, "ok"),  # other size
             (1_000_000.0006, ("127.0.0.1", 9), 0, 4, "reset"),  # other outcome
             (1_000_000.0016, ("127.0.0.1", 10), 0, 4, "reset"),  # next millisecond
             (1_000_000.0017, "other", 0, 4, "ok"),  # another service's instant line between
             (1_000_000.0018, ("127.0.0.1", 11), 0, 4, "reset")]
    service, model = "day%stime", "async"
    batched, single = io.StringIO(), io.StringIO()
    clock = iter([now for now, *_ in steps])

    async def main() -> None:
        clog = ConnectionLog(batched, fmt)
        write = clog.instant_lines(service, model).add
        other = clog.instant_lines("time", model).add
        for _, peer, bytes_in, bytes_out, outcome in steps:
            if peer is None:
                clog.queue("echo", ("10.0.0.1", 1), "async", 42, 0.25, 1, 2, "ok")
            elif peer == "other":
                other(("127.0.0.9", 12), bytes_in, bytes_out, outcome)
            else:
                write(peer, bytes_in, bytes_out, outcome)
        assert batched.getvalue() == ""  # queued, not yet written
        clog.flush()

    import unittest.mock

    with unittest.mock.patch.object(logs, "_wall", lambda: next(clock)):
        asyncio.run(main())
    clog = ConnectionLog(single, fmt)
    for now, peer, bytes_in, bytes_out, outcome in steps:
        if peer is None:
            line = clog.line(now, "echo", ("10.0.0.1", 1), "async", 42, 0.25, 1, 2, "ok")
        elif peer == "other":
            line = clog.line(now, "time", ("127.0.0.9", 12), model, None, None, bytes_in, bytes_out, outcome)
        else:
            line = clog.line(now, service, peer, model, None, None, bytes_in, bytes_out, outcome)
        single.write(line + "\n")
    assert batched.getvalue() == single.getvalue()
    text = batched.getvalue()
    assert text.count("\n") == len(steps)
    if fmt == "plain":
        assert " day%stime [::1]:7 async pid=" in text and "out=4 reset\n" in text
        assert text.count(",000 inetkit[") == 6 and text.count(",001 inetkit[") == 3
        assert " INFO time 127.0.0.9:12 async " in text


def test_instant_lines_outside_a_loop_writes_at_once() -> None:
    out = io.StringIO()
    ConnectionLog(out, "plain").instant_lines("daytime", "async").add(("127.0.0.1", 5), 0, 26, "ok")
    assert re.fullmatch(r".* INFO daytime 127\.0\.0\.1:5 async pid=%d 0\.000s in=0 out=26 ok\n" % os.getpid(),
                        out.getvalue())


def test_runs_of_lines_survive_any_interleaving_and_size_flushes() -> None:
    """Thousands of lines from two instant writers and ``queue`` in a random
    order (seeded), across milliseconds and size-triggered flushes, read as
    the same lines written one by one."""
    import random

    rng = random.Random(3)
    steps = []
    now = 1_000_000.0
    for i in range(3000):
        now += rng.choice([0.0, 0.00005, 0.0004, 0.003])
        steps.append((now, rng.choice(["a", "b", "q"]), ("127.0.0.1", 1024 + i), rng.choice([26, 26, 26, 4]),
                      rng.choice(["ok"] * 8 + ["reset"])))
    batched, single = io.StringIO(), io.StringIO()
    clock = iter([step[0] for step in steps])

    async def main() -> None:
        clog = ConnectionLog(batched, "plain")
        writers = {"a": clog.instant_lines("daytime", "async").add, "b": clog.instant_lines("time", "async").add}
        for _, who, peer, size, outcome in steps:
            if who == "q":
                clog.queue("echo", peer, "async", 42, None, 1, size, outcome)
            else:
                writers[who](peer, 0, size, outcome)
        clog.flush()

    import unittest.mock

    with unittest.mock.patch.object(logs, "_wall", lambda: next(clock)):
        asyncio.run(main())
    clog = ConnectionLog(single, "plain")
    names = {"a": "daytime", "b": "time"}
    for now, who, peer, size, outcome in steps:
        if who == "q":
            line = clog.line(now, "echo", peer, "async", 42, None, 1, size, outcome)
        else:
            line = clog.line(now, names[who], peer, "async", None, None, 0, size, outcome)
        single.write(line + "\n")
    assert batched.getvalue() == single.getvalue()
