"""The fork model's lean worker (``models/forkworker.py``): what makes it fast
must not change what it does.

- its connection line is the daemon's, byte for byte (plain and JSON);
- it stays lean: no asyncio, subprocess, argparse or logging setup loaded;
- the libc fork is used only when provably safe, and children still get a
  fresh random state;
- events reach the daemon whole, in batches, and replay in either order;
- a child killed by a signal is reaped, reported and logged;
- access rules still refuse under the fork model (and log once per burst);
- the worker's hand-written argument parser rejects bad input clearly.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inetkit.logs import ConnectionLog
from inetkit.models import forkworker
from inetkit.models.forking import fork_worker_environment, lean_worker_environment, lean_worker_path, worker_command
from inetkit.models.forkworker import ConnectionLine, EventBatch, ForkCall, InstantAnswer
from inetkit.services.base import Service
from inetkit.services.internal import DaytimeService
from inetkit.testing.net import connect, recv_all
from inetkit.worker import UsageError, parse_args

SRC = str(Path(forkworker.__file__).resolve().parents[2])


# -- the log line -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["plain", "json"])
@pytest.mark.parametrize("service, peer", [
    ("daytime", ("127.0.0.1", 5000)),
    ("we\"ird\\name\x1b[31m", ("::1", 7)),
    ("fe80", ("fe80::1%lo", 9)),
])
def test_connection_line_is_the_daemon_format(fmt: str, service: str, peer: tuple[str, int]) -> None:
    now, started, end = 1_763_000_000.25, 100.0, 101.2345
    expected = ConnectionLog(io.StringIO(), fmt)._format(now - end, end, service, peer, "fork", 4242, started,
                                                         3, 26, "ok") + "\n"
    line = ConnectionLine(service, "fork", fmt).format(now, peer, 4242, end - started, 3, 26, "ok")
    assert line == expected
    if fmt == "json":
        assert json.loads(line)["service"] == service


# -- leanness and the fork call ---------------------------------------------------------------

_LEAN_PROBE = """
import sys
sys.path[:] = {path!r}
from inetkit.models import forkhooks
assert forkhooks.install()
import inetkit.worker
from inetkit.config.schema import ServiceConfig
from inetkit.models import forkworker
from inetkit.services.registry import create_service
forkworker.setup_worker_logging()
create_service("daytime", {{}}, "test")
heavy = sorted(m for m in ("asyncio", "subprocess", "argparse", "inetkit.logs", "inetkit.models.runtime",
                           "inetkit.models.forking") if m in sys.modules)
print(" ".join(heavy) or "lean")
import threading
print(forkworker.ForkCall().pick()[1])
t = threading.Thread(target=threading.Event().wait, args=(2,), daemon=True)
t.start()
print(forkworker.ForkCall().pick()[1])
"""

_FOREIGN_HOOK = """
import os, sys
sys.path[:] = {path!r}
from inetkit.models import forkhooks
assert forkhooks.install()
from inetkit.models import forkworker
import asyncio, concurrent.futures.thread, logging, random, threading
print(forkhooks.all_skippable(), forkworker.ForkCall().pick()[1])
os.register_at_fork(after_in_child=lambda: None)  # anyone else's hook: os.fork from now on
print(forkhooks.all_skippable(), forkworker.ForkCall().pick()[1], forkhooks.registered[-1])
"""


def _lean_python(code: str, *args: str, **kwargs):  # type: ignore[no-untyped-def]
    path = lean_worker_path("inetkit.services.internal")
    assert path is not None
    return subprocess.run([sys.executable, "-S", "-c", code.format(path=path), *args], capture_output=True,
                          text=True, timeout=30, **kwargs)


def test_the_fork_worker_imports_nothing_heavy_and_forks_fast_only_single_threaded() -> None:
    result = _lean_python(_LEAN_PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lean", "True", "False"]


def test_a_hook_of_anyone_else_means_os_fork() -> None:
    result = _lean_python(_FOREIGN_HOOK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False", "False", "__main__"]


def test_a_process_started_without_the_hook_recorder_uses_os_fork() -> None:
    from inetkit.models import forkhooks

    assert not forkhooks.install()  # pytest has imported logging, threading and more long ago
    assert ForkCall().pick() == (os.fork, False)


def test_lean_worker_path_needs_a_plain_path_to_every_module() -> None:
    path = lean_worker_path("inetkit.services.internal")
    assert path is not None and SRC in [os.path.abspath(p) for p in path if p]
    assert lean_worker_path("no_such_module_anywhere_xyz") is None
    assert worker_command("fork", _config(), 3, lean=True)[1:6] == ["-S", "-m", "inetkit.worker", "--model", "fork"]
    assert worker_command("async", _config(), 3)[1:3] == ["-m", "inetkit.worker"]


@pytest.mark.parametrize("previous", [None, "", "/somewhere/else"])
def test_a_lean_worker_takes_the_daemon_path_and_restores_pythonpath(monkeypatch: pytest.MonkeyPatch,
                                                                     previous: str | None) -> None:
    if previous is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", previous)
    path = lean_worker_path("inetkit")
    assert path is not None
    probe = ("import os, sys, json; import inetkit.worker; "
             "print(json.dumps([sys.path, os.environ.get('PYTHONPATH'), "
             "[k for k in os.environ if k.startswith('INETKIT_WORKER')]]))")
    result = subprocess.run([sys.executable, "-S", "-c", probe], env=lean_worker_environment(path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    sys_path, pythonpath, leftovers = json.loads(result.stdout)
    assert sys_path == path and pythonpath == previous and leftovers == []


def _config():  # type: ignore[no-untyped-def]
    from inetkit.config.schema import ServiceConfig

    return ServiceConfig(name="daytime", port=0, proto="tcp", model="fork", handler="daytime")


# -- the loop itself, run in a lean subprocess ---------------------------------------------

_SERVE = """
import sys
sys.path[:] = {path!r}
from inetkit.models import forkhooks
forkhooks.install()
import os, random, socket
from inetkit.config.schema import ServiceConfig
from inetkit.models import forkworker
from inetkit.services.base import Service

class Lottery(Service):
    name = "lottery"
    def handle_blocking(self, sock, ctx):
        if ctx.peer[1] % 1 == 0 and sock.recv(1) == b"w":
            sock.recv(1)  # wait for the test to kill us
        sock.sendall(b"%r %d %s:%d" % (random.random(), os.getpid(), ctx.local[0].encode(), ctx.local[1]))

forkworker.setup_worker_logging()
listener = socket.create_server(("127.0.0.1", 0))
config = ServiceConfig(name="lottery", port=0, proto="tcp", model="fork", handler="x:Lottery")
forker = forkworker.ForkCall()
if {handler!r}:  # no signalfd: SIGCHLD through a handler and the wakeup pipe
    forker.child_exit_fd = lambda: None
print(listener.getsockname()[1], forker.pick()[1], flush=True)
sys.exit(forkworker.serve(listener, config, Lottery({{}}), events_fd=int(sys.argv[1]), grace=0.5, forker=forker))
"""


def _has_signalfd(pid: int) -> bool:
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            if "sigmask:" in info.read_text():
                return True
        except OSError:
            pass  # closed meanwhile
    return False


def _events(fd: int, want: int, deadline: float) -> list[dict]:  # type: ignore[type-arg]
    got: list[dict] = []  # type: ignore[type-arg]
    pending = b""
    while len(got) < want and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        got += [json.loads(line) for line in lines]
    return got


@pytest.mark.parametrize("handler", [False, True])
def test_children_reseed_random_are_reaped_and_a_killed_child_is_logged(handler: bool) -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    path = lean_worker_path("inetkit")
    proc = subprocess.Popen([sys.executable, "-S", "-c", _SERVE.format(path=path, handler=handler), str(wfd)],
                            pass_fds=(wfd,),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(wfd)
    try:
        assert proc.stdout is not None
        port, fast = proc.stdout.readline().split()
        assert fast == "True"  # random is imported: the libc fork is used and must reseed
        draws = []
        for _ in range(3):
            with connect(("127.0.0.1", int(port))) as sock:
                sock.sendall(b"x")
                draw, _, local = recv_all(sock).split()
                assert local == b"127.0.0.1:" + port.encode()  # the context's local address
                draws.append(draw)
        assert len(set(draws)) == 3, draws  # no child replays its siblings' numbers
        assert _has_signalfd(proc.pid) is not handler  # (the loop is serving: the descriptor is open)
        victim = connect(("127.0.0.1", int(port)))
        with victim:
            victim.sendall(b"w")
            deadline = time.monotonic() + 10
            events = _events(rfd, 3 * 3 + 1, deadline)  # open/close/reap x3, then the victim's open
            opened = [e for e in events if e["ev"] == "open"]
            assert len(opened) == 4 and len({e["id"] for e in opened}) == 4, events
            assert sorted(e["ev"] for e in events).count("close") == 3
            os.kill(opened[-1]["pid"], signal.SIGKILL)
            reaped = _events(rfd, 1, deadline)
            assert reaped == [{"ev": "reap", "id": opened[-1]["id"], "outcome": "killed=9"}]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "lottery 127.0.0.1:" in err and "killed=9" in err
        assert err.count(" ok\n") == 3, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(rfd)


# -- the instant-reply fast path ------------------------------------------------------------

_SERVE_INSTANT = """
import sys
sys.path[:] = {path!r}
from inetkit.models import forkhooks
forkhooks.install()
import socket
from inetkit.config.schema import ServiceConfig
from inetkit.models import forkworker
from inetkit.proto import internal as core
from inetkit.services.base import Service
from inetkit.services.internal import DaytimeService

class Picky(DaytimeService):
    name = "picky"
    def open_session(self, ctx):
        if ctx.peer[1] % 4 == 2:  # some client ports: a failing service
            raise ValueError("unlucky port")
        return core.OneShotSession(b"%s %d %s:%d\\r\\n" % (ctx.peer[0].encode(), ctx.peer[1],
                                                          ctx.local[0].encode(), ctx.local[1]))

forkworker.setup_worker_logging()
listener = socket.create_server(({host!r}, 0))
config = ServiceConfig(name="picky", port=0, proto="tcp", model="fork", handler="x:Picky")
print(listener.getsockname()[1], flush=True)
forker = forkworker.ForkCall()
if {failing!r}:  # libc's fork "fails": the loop falls back to os.fork
    assert forker.pick()[1]
    forker._libc_fork = lambda: -1
sys.exit(forkworker.serve(listener, config, Picky({{}}), events_fd=int(sys.argv[1]), grace=0.5, forker=forker,
                          connection_log={log!r}))
"""


class _Overrides(DaytimeService):
    def handle_blocking(self, sock, ctx):  # type: ignore[no-untyped-def]
        sock.sendall(b"mine")


class _Big(DaytimeService):
    def open_session(self, ctx):  # type: ignore[no-untyped-def]
        from inetkit.proto import internal as core

        return core.OneShotSession(b"x" * 5000)


def test_the_instant_answer_is_computed_in_the_parent_only_where_it_is_the_same_answer() -> None:
    from inetkit.services.internal import EchoService

    sctx = forkworker.service_context(_config())
    local = ("127.0.0.1", 13)
    answer = InstantAnswer(DaytimeService(), sctx, local)
    assert answer.enabled
    text = answer(("127.0.0.1", 5000))
    assert text is not None and text.endswith(b"\r\n") and len(text.split()) == 5
    assert not InstantAnswer(DaytimeService(), sctx, None).enabled  # wildcard bind: local address varies
    assert not InstantAnswer(_Overrides(), sctx, local).enabled  # its own way of answering
    assert not InstantAnswer(EchoService(), sctx, local).enabled  # not an instant reply
    assert InstantAnswer(_Big(), sctx, local)(("127.0.0.1", 5000)) is None  # may not fit the send buffer


class _OwnSecond(_Big):
    instant_reply_per_second = True  # vouches for its own open_session


def test_only_a_service_that_vouches_for_its_own_session_is_answered_once_per_second() -> None:
    from inetkit.services.internal import TimeService

    sctx = forkworker.service_context(_config())
    local = ("127.0.0.1", 13)
    assert InstantAnswer(DaytimeService(), sctx, local).per_second
    assert InstantAnswer(TimeService(), sctx, local).per_second
    assert not InstantAnswer(_Big(), sctx, local).per_second  # inherits the flag, not the session it covers
    assert InstantAnswer(_OwnSecond(), sctx, local).per_second
    assert not InstantAnswer(DaytimeService(), sctx, None).per_second  # not an instant answer at all here


@pytest.mark.parametrize("handler", ["daytime", "time"])
def test_fork_daytime_and_time_answer_the_current_second(handler: str) -> None:
    from inetkit.proto import internal as core
    from inetkit.testing.running import running_service

    with running_service(handler, model="fork") as svc:
        for _ in range(30):  # a burst within a second or two: the cached answer, then a fresh one
            before = time.time()
            with connect(svc.address) as sock:
                got = recv_all(sock)
            after = time.time()
            if handler == "daytime":
                expected = {core.daytime_text(t) for t in (before, after)}
            else:
                expected = {core.time_bytes(t) for t in (before, after)}
            assert got in expected, (got, expected)


@pytest.mark.parametrize("host, failing, log", [("127.0.0.1", False, True), ("0.0.0.0", False, True),
                                                ("127.0.0.1", True, True), ("127.0.0.1", False, False)])
def test_instant_children_send_the_parents_answer_and_failures_go_the_ordinary_way(host: str, failing: bool,
                                                                                   log: bool) -> None:
    # log off: the children's shortest path (answer_at_once, the events line made by the parent)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    path = lean_worker_path("inetkit")
    code = _SERVE_INSTANT.format(path=path, host=host, failing=failing, log=log)
    proc = subprocess.Popen([sys.executable, "-S", "-c", code, str(wfd)],
                            pass_fds=(wfd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(wfd)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        good = bad = 0
        sizes = []
        for _ in range(40):  # consecutive client ports: both kinds come up at once
            if good >= 3 and bad >= 2:
                break
            with connect(("127.0.0.1", port)) as sock:
                mine = sock.getsockname()[1]
                got = recv_all(sock)
            if mine % 4 == 2:
                assert got == b""  # the service failed: nothing sent, the child logs it
                bad += 1
            else:
                # the context the answer was made from: this peer, the listener's address
                assert got == b"127.0.0.1 %d 127.0.0.1:%d\r\n" % (mine, port)
                sizes.append(len(got))
                good += 1
        assert good >= 3 and bad >= 2, (good, bad)
        events = _events(rfd, 3 * (good + bad), time.monotonic() + 10)
        closes = [e for e in events if e["ev"] == "close"]
        assert sorted(e["outcome"] for e in closes) == ["error"] * bad + ["ok"] * good, events
        assert sorted(e["out"] for e in closes if e["outcome"] == "ok") == sorted(sizes), closes
        reaps = [e for e in events if e["ev"] == "reap"]
        assert sorted(e["outcome"] for e in reaps) == ["exit=1"] * bad + ["ok"] * good, events
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert err.count("child failed for 127.0.0.1:") == bad and "unlucky port" in err, err
        if log:
            assert err.count(" ok\n") == good and err.count(" error\n") == bad, err
            assert sorted(int(line.split(" out=")[1].split()[0]) for line in err.splitlines()
                          if line.endswith(" ok")) == sorted(sizes), err
        else:
            assert " ok\n" not in err and " error\n" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(rfd)


def test_answer_at_once_sends_closes_reports_and_leaves() -> None:
    import socket

    left: list[int] = []
    rfd, wfd = os.pipe()
    a, b = socket.socketpair()
    try:
        b.settimeout(5)
        fd = a.detach()
        assert forkworker.answer_at_once(fd, b"now\r\n", b"done\n", wfd, leave=left.append) == (5, None)
        assert left == [0] and recv_all(b) == b"now\r\n"  # closed: the peer sees EOF
        assert os.read(rfd, 100) == b"done\n"
        with pytest.raises(OSError):
            os.fstat(fd)
        # the events pipe full (the daemon behind): the connection still went well
        os.set_blocking(wfd, False)
        try:
            while True:
                os.write(wfd, b"x" * 4096)
        except BlockingIOError:
            pass
        c, d = socket.socketpair()
        with d:
            assert forkworker.answer_at_once(c.detach(), b"hi", b"done\n", wfd, leave=left.append) == (2, None)
            assert left == [0, 0]
        # a short write: nothing closed, nothing reported, the caller goes on
        e, f = socket.socketpair()
        with e, f:
            assert forkworker.answer_at_once(e.fileno(), b"hello", b"done\n", wfd, leave=left.append,
                                             write=lambda fd, data: os.write(fd, data[:2])) == (2, None)
            assert left == [0, 0] and f.recv(10) == b"he"
            # a failed write is handed back, never raised (the child must not return to the loop)
            f.close()
            sent, failure = forkworker.answer_at_once(e.fileno(), b"x" * 100000, b"done\n", wfd,
                                                      leave=left.append)
            assert isinstance(failure, ConnectionError) and left == [0, 0]
    finally:
        a.close()
        b.close()
        os.close(rfd)
        os.close(wfd)


def test_the_parents_close_line_is_the_childs() -> None:
    assert EventBatch.CLOSED_OK % (17, 26) == EventBatch.close_line(17, 0, 26, "ok").encode()


def test_ld_bind_now_is_added_for_the_worker_only(monkeypatch: pytest.MonkeyPatch) -> None:
    env = fork_worker_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "LD_BIND_NOW": "1", "INETKIT_WORKER_BIND_NOW": "1"}
    assert fork_worker_environment({"LD_BIND_NOW": "yes"}) == {"LD_BIND_NOW": "yes"}  # the user's own
    monkeypatch.setenv("LD_BIND_NOW", "1")
    monkeypatch.setenv("INETKIT_WORKER_BIND_NOW", "1")
    forkworker.forget_bind_now()
    assert "LD_BIND_NOW" not in os.environ and "INETKIT_WORKER_BIND_NOW" not in os.environ
    monkeypatch.setenv("LD_BIND_NOW", "yes")
    forkworker.forget_bind_now()  # not added by the daemon: kept
    assert os.environ["LD_BIND_NOW"] == "yes"


class EnvProbe(Service):
    """Sends what a fork child's environment says about LD_BIND_NOW."""

    name = "env-probe"
    tcp_models = frozenset({"fork"})

    def handle_blocking(self, sock, ctx):  # type: ignore[no-untyped-def]
        sock.sendall(repr(os.environ.get("LD_BIND_NOW")).encode())


def test_the_worker_starts_bound_and_its_children_do_not_inherit_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from inetkit.testing.running import running_service

    monkeypatch.delenv("LD_BIND_NOW", raising=False)
    with running_service(f"{__name__}:EnvProbe", model="fork") as svc:
        with connect(svc.address) as sock:
            assert recv_all(sock) == b"None"
        worker = svc.call(lambda: svc.runtime.ctx.stats["worker_pid"])
        started_with = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        assert b"LD_BIND_NOW=1" in started_with


# -- events -------------------------------------------------------------------------------


def test_event_batches_are_whole_lines_within_pipe_buf(monkeypatch: pytest.MonkeyPatch) -> None:
    rfd, wfd = os.pipe()
    try:
        batch = EventBatch(wfd)
        writes: list[str] = []
        real = batch._write
        monkeypatch.setattr(batch, "_write", lambda text: (writes.append(text), real(text)))
        assert batch.queue is not None
        for i in range(300):
            batch.queue.append(("open", i, ("::1", 1000 + i), 5000 + i))
            batch.queue.append(("reap", i, "ok"))
        batch.queue.append(("refused",))
        batch.flush()
        assert len(writes) > 1 and all(len(w) <= forkworker.PIPE_BUF and w.endswith("\n") for w in writes)
        data = b""
        while len(data) < sum(len(w) for w in writes):
            data += os.read(rfd, 65536)
        events = [json.loads(line) for line in data.splitlines()]
        assert len(events) == 601 and events[0] == {"ev": "open", "id": 0, "peer": ["::1", 1000], "pid": 5000}
        assert events[-1] == {"ev": "refused"}
    finally:
        os.close(rfd)
        os.close(wfd)


def test_the_daemon_replays_a_close_that_overtook_its_open() -> None:
    from inetkit.models.runtime import ServiceRuntime

    rt = ServiceRuntime.create(_config(), None)
    for line in (EventBatch.close_line(1, 0, 26, "ok"), EventBatch.line(("open", 1, ("127.0.0.1", 5), 77))):
        rt.apply_event(9, json.loads(line))
    assert [c["pid"] for c in rt.status()["connections"]] == [77]
    rt.apply_event(9, json.loads(EventBatch.line(("reap", 1, "ok"))))
    status = rt.status()
    assert status["connections"] == [] and status["counters"]["bytes_out"] == 26
    assert status["counters"]["errors"] == 0 and status["counters"]["accepted"] == 1


# -- through the daemon ------------------------------------------------------------------------

_DENIED = """
[services.daytime]
port = 0
handler = "daytime"
model = "fork"
[services.daytime.limits]
deny = ["127.0.0.0/8"]

[services.fecho]
port = 0
handler = "echo"
model = "fork"
[services.fecho.limits]
max_per_source = 1
"""


def test_fork_refusals_are_logged_once_per_burst_and_forks_go_on(tmp_path: Path) -> None:
    from inetkit.testing.running import RunningDaemon, _wait_ready, stop_process

    config = tmp_path / "fork.toml"
    config.write_text(_DENIED)
    log_path = tmp_path / "stderr.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inetkit.cli.main", "serve", "-c", str(config), "--no-control"],
            stdout=subprocess.PIPE, stderr=log_file, text=True,
        )
        daemon = RunningDaemon(proc)
        try:
            _wait_ready(daemon, 20.0)
            for _ in range(3):  # denied: accepted, then closed at once
                with connect(("127.0.0.1", daemon.port("daytime"))) as sock:
                    assert recv_all(sock) == b""
            echo = ("127.0.0.1", daemon.port("fecho"))
            with connect(echo) as held:
                held.sendall(b"a")
                assert held.recv(1) == b"a"
                with connect(echo) as extra:  # over max_per_source: a warning loads the logging setup
                    assert recv_all(extra) == b""
            # and the worker forks on (through os.fork once inetkit.logs is
            # loaded); a slot frees once the held child is reaped
            served, deadline = 0, time.monotonic() + 10
            while served < 5 and time.monotonic() < deadline:
                with connect(echo) as sock:
                    try:
                        sock.sendall(b"%d" % served)
                        if sock.recv(1) == b"%d" % served:
                            served += 1
                    except ConnectionError:
                        time.sleep(0.02)  # refused: the held child is not reaped yet
            assert served == 5
        finally:
            stop_process(proc)  # the worker drains first: every line is written by then
    text = log_path.read_text()
    denied = [line for line in text.splitlines() if "refused 127.0.0.1:" in line and "access rules" in line]
    assert len(denied) == 1 and " WARNING daytime: refused 127.0.0.1:" in denied[0], text
    assert "denied by access rules (logged once per burst)" in denied[0]
    assert "max_per_source reached" in text
    lines = [line for line in text.splitlines() if " INFO fecho 127.0.0.1:" in line and " fork pid=" in line]
    assert len(lines) == 6 and all(line.endswith(" ok") for line in lines), text


# -- the worker's arguments ----------------------------------------------------------------


def test_worker_arguments() -> None:
    args = parse_args(["--model", "fork", "--fd", "3", "--spec", "{}", "--events", "7", "--grace", "2.5",
                       "--no-connection-log"])
    assert args == {"model": "fork", "fd": 3, "spec": "{}", "events": 7, "grace": 2.5, "connection_log": False}
    for bad, why in [(["--fd", "3", "--spec", "{}"], "--model is required"),
                     (["--model", "fork", "--fd", "x", "--spec", "{}"], "bad value"),
                     (["--model", "thread", "--fd", "3", "--spec", "{}"], "not fork or async"),
                     (["--model", "fork", "--fd"], "needs a value"),
                     (["--model", "fork", "--fd", "3", "--spec", "{}", "--what"], "unknown argument")]:
        with pytest.raises(UsageError, match=why):
            parse_args(bad)
    result = subprocess.run([sys.executable, "-m", "inetkit.worker", "--model", "fork"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "usage: inetkit-worker" in result.stderr and "Traceback" not in result.stderr
