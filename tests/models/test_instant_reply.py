"""The async model's reply-at-accept path (models/instant.py): daytime and
time, plus services made up here for its rare branches (a reply larger than
the socket takes at once, a session that wrongly claims to answer at once)."""

from __future__ import annotations

import pytest

from inetkit.config.schema import Limits
from inetkit.models import instant
from inetkit.proto import internal as core
from inetkit.services.base import ConnectionContext, StreamSession, answers_per_second
from inetkit.services.internal import DaytimeService, EchoService, TimeService
from inetkit.testing.logs import captured_log
from inetkit.testing.net import connect, recv_all
from inetkit.testing.running import running_service

BIG = bytes(range(256)) * 32768  # 8 MiB: more than one send into a fresh socket takes


class BigReplyService(DaytimeService):
    """Answers 8 MiB at once: the first send cannot take it all."""

    name = "big-reply"

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.OneShotSession(BIG)


class _Chatty(StreamSession):
    def start(self) -> bytes:
        return b"hello\r\n"  # but does not close: not an instant reply


class MisdeclaredService(DaytimeService):
    name = "misdeclared"

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return _Chatty()


def _counters(svc):  # type: ignore[no-untyped-def]
    return svc.call(lambda: dict(svc.runtime.counters.as_dict()))


def _what_a_refused_client_reads(address: tuple[str, int]) -> bytes:
    """All a client reads before the close (a refusal may also reset it)."""
    with connect(address) as c:
        try:
            return recv_all(c)
        except ConnectionResetError:
            return b""


def test_daytime_async_answers_from_the_accepted_socket() -> None:
    with running_service("daytime", model="async") as svc:
        for _ in range(20):
            with connect(svc.address) as c:
                line = recv_all(c)
            assert line.endswith(b"\r\n") and len(line.split()) == 5
        counters = _counters(svc)
        assert counters["accepted"] == 20
        assert counters["bytes_out"] == 20 * len(line)
        assert counters["errors"] == 0
        assert svc.call(lambda: len(svc.runtime.live)) == 0  # nothing left open


def test_time_async_answers_four_bytes() -> None:
    with running_service("time", model="async") as svc:
        with connect(svc.address) as c:
            assert len(recv_all(c)) == 4


def test_access_rules_refuse_before_any_reply() -> None:
    with running_service("daytime", model="async", limits=Limits(deny=("127.0.0.0/8",))) as svc:
        assert _what_a_refused_client_reads(svc.address) == b""
        counters = _counters(svc)
        assert counters["refused"] == 1 and counters["accepted"] == 0


@pytest.mark.parametrize("model", ["async", "thread", "fork"])
def test_a_reply_larger_than_one_send_arrives_whole(model: str) -> None:
    # async: the rest is finished by a transport; blocking models: sendall under the idle timeout
    with captured_log() as log, running_service(f"{__name__}:BigReplyService", model=model) as svc:
        with connect(svc.address) as c:
            client = f"127.0.0.1:{c.getsockname()[1]} "
            got = recv_all(c)
        assert got == BIG
        if model != "fork":  # a fork child's byte counts reach the daemon as worker events
            # counted once its connection log line is written (the client may see EOF first)
            assert log.wait_for(client).endswith(" ok")
            counters = _counters(svc)
            assert counters["bytes_out"] == len(BIG) and counters["errors"] == 0


@pytest.mark.parametrize("model", ["async", "thread"])
def test_a_session_that_does_not_close_is_an_error_not_a_crash(model: str) -> None:
    with captured_log() as log, running_service(f"{__name__}:MisdeclaredService", model=model) as svc:
        for _ in range(2):  # the listener keeps serving after the failure
            with connect(svc.address) as c:
                client = f"127.0.0.1:{c.getsockname()[1]} "
                assert recv_all(c) == b""
            # the client may see the close before the daemon has counted it:
            # its connection log line is written once it has
            assert log.wait_for(client).endswith(" error")
        assert _counters(svc)["errors"] == 2


class CountingDaytime(DaytimeService):
    """Vouches that its answer changes once a second and counts its sessions."""

    name = "counting-daytime"
    instant_reply_per_second = True
    sessions = 0

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        type(self).sessions += 1
        return core.OneShotSession(b"answer %d\r\n" % type(self).sessions)


def test_which_services_are_answered_once_per_second() -> None:
    assert answers_per_second(DaytimeService()) and answers_per_second(TimeService())
    assert answers_per_second(CountingDaytime())  # vouches for its own open_session
    assert not answers_per_second(BigReplyService())  # inherits the flag, not the session it covers
    assert not answers_per_second(EchoService())  # not an instant reply at all


def test_a_per_second_answer_is_made_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = iter([1000.2] * 3 + [1001.0] * 2)
    monkeypatch.setattr(instant, "_wall", lambda: next(seconds))
    CountingDaytime.sessions = 0
    with running_service(f"{__name__}:CountingDaytime", model="async") as svc:
        answers = []
        for _ in range(5):
            with connect(svc.address) as c:
                answers.append(recv_all(c))
        assert answers == [b"answer 1\r\n"] * 3 + [b"answer 2\r\n"] * 2
        counters = _counters(svc)
        assert counters["accepted"] == 5 and counters["bytes_out"] == sum(map(len, answers))


def test_an_answer_that_outlives_its_callback_counts_against_the_limits() -> None:
    # a connection served whole in its accept callback is never live beside
    # another; one whose answer is still being sent is, and max_connections counts it
    with running_service(f"{__name__}:BigReplyService", model="async", limits=Limits(max_connections=1)) as svc:
        with connect(svc.address) as first:
            start = first.recv(1)  # its answer has started and cannot all be sent yet: it is held
            assert svc.call(lambda: len(svc.runtime.live)) == 1
            assert _what_a_refused_client_reads(svc.address) == b""
            got = start + recv_all(first)
        assert got == BIG and _counters(svc)["refused"] == 1
        for _ in range(3):  # and once it is done, the limit has room again
            with connect(svc.address) as c:
                assert recv_all(c) == BIG


def test_a_backlog_of_connections_is_drained() -> None:
    # one accept per readiness callback (ACCEPT_BATCH): the level-triggered
    # loop keeps calling back while connections wait in the backlog
    with running_service("daytime", model="async") as svc:
        clients = [connect(svc.address) for _ in range(64)]
        try:
            answers = [recv_all(c) for c in clients]
        finally:
            for c in clients:
                c.close()
        assert all(a.endswith(b"\r\n") for a in answers)
        assert _counters(svc)["accepted"] == 64


def test_each_connection_gets_its_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instant path writes the connection line itself (inlined for its
    common case): one per connection, the peer's port, the reply's size."""
    import io
    import os
    import re

    from inetkit import logs

    out = io.StringIO()
    clog = logs.ConnectionLog(out, "plain")
    monkeypatch.setattr(logs, "_connection_log", clog)
    ports, sizes = [], []
    with running_service("daytime", model="async") as svc:
        for _ in range(5):
            with connect(svc.address) as c:
                ports.append(c.getsockname()[1])
                sizes.append(len(recv_all(c)))
        svc.call(clog.flush)
        assert _counters(svc)["bytes_out"] == sum(sizes)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    for line, port, size in zip(lines, ports, sizes):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} inetkit\[%d\] INFO daytime 127\.0\.0\.1:%d "
                            r"async pid=%d 0\.000s in=0 out=%d ok" % (os.getpid(), port, os.getpid(), size), line)
