"""inetd's looping guard: an exec'd program that keeps failing at once is
started again only after a growing delay (reported in status), and the
guard lets go once the backoff has passed and the program behaves."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from inetkit.testing.net import connect
from inetkit.testing.running import RunningService, running_service


def looping(svc: RunningService) -> dict[str, Any]:
    return svc.call(lambda: svc.runtime.status()["looping"])


def served_in(svc: RunningService) -> tuple[bytes, float]:
    """Connect, read to EOF; (what the program said, seconds until EOF)."""
    started = time.monotonic()
    with connect(svc.address) as s:
        data = b""
        try:
            while chunk := s.recv(100):
                data += chunk
        except ConnectionResetError:
            pass
    return data, time.monotonic() - started


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_guard_engages_for_bin_false_with_growing_backoff() -> None:
    with running_service(program=("/bin/false",), model="exec", name="broken") as svc:
        for _ in range(3):
            assert served_in(svc)[0] == b""
        # three quick failures in a row: the next start is held back 0.5 s
        assert wait_for(lambda: looping(svc)["failures"] == 3)
        state = looping(svc)
        assert state["engaged"] and 0 < state["throttled_for"] <= 0.5
        _, waited = served_in(svc)
        assert waited >= 0.3
        # and the next one twice as long: throttled, never spun
        assert wait_for(lambda: looping(svc)["failures"] == 4)
        assert 0.5 < looping(svc)["throttled_for"] <= 1.0
        # the backoff passes: released (no longer engaged), the program is tried again
        assert wait_for(lambda: not looping(svc)["engaged"], timeout=5)
        counters = svc.call(lambda: svc.runtime.counters.as_dict())
        assert counters["accepted"] == 4 and counters["errors"] == 4


def test_guard_releases_when_the_program_recovers(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    # fails at once while the flag file exists, greets once it is gone
    program = ("/bin/sh", "-c", 'test -e "$0" && exit 1; echo ok', str(flag))
    with running_service(program=program, model="exec", name="flaky") as svc:
        for _ in range(3):
            assert served_in(svc)[0] == b""
        assert wait_for(lambda: looping(svc)["engaged"])
        flag.unlink()
        data, waited = served_in(svc)  # held back for the rest of the backoff, then served
        assert data == b"ok\n"
        assert waited < 2.0
        assert wait_for(lambda: looping(svc) == {"engaged": False, "failures": 0, "throttled_for": 0.0})
        data, waited = served_in(svc)  # released: served at once again
        assert data == b"ok\n" and waited < 1.0


def test_other_clients_of_other_services_are_not_held_back() -> None:
    from inetkit.testing.net import recv_exactly
    from inetkit.testing.running import running_services, service_config

    configs = [service_config(program=("/bin/false",), model="exec", name="broken"), service_config("echo")]
    with running_services(configs) as (broken, echo):
        for _ in range(4):
            with connect(broken.address) as s:
                s.settimeout(5)
                try:
                    s.recv(1)
                except (ConnectionResetError, socket.timeout):
                    pass
        assert wait_for(lambda: looping(broken)["engaged"])
        started = time.monotonic()
        with connect(echo.address) as s:
            s.sendall(b"fine")
            assert recv_exactly(s, 4) == b"fine"
        assert time.monotonic() - started < 0.5


def test_throttling_is_logged_once_per_backoff_step() -> None:
    import logging
    import threading

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("inetkit")
    handler, old_level = Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with running_service(program=("/bin/false",), model="exec", name="broken") as svc:
            for _ in range(3):
                served_in(svc)
            assert wait_for(lambda: looping(svc)["engaged"])
            # five clients arrive during one backoff step: all wait, one log line
            clients = [threading.Thread(target=served_in, args=(svc,)) for _ in range(5)]
            for t in clients:
                t.start()
            for t in clients:
                t.join(10)
        throttled = [r for r in records if "keeps failing" in r]
        assert 1 <= len(throttled) <= 2, throttled  # the step, plus possibly the next one
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
