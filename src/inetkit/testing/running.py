"""Run inetkit for a test: in-process (``running_service``) or as the real
``inetkit serve`` command (``running_daemon``).

Both bind port 0 unless told otherwise, return only once every listener is
bound (readiness is signalled, not slept for), and stop what they started by
its PID or thread, within a bounded time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from inetkit.config.schema import DaemonConfig, Limits, ServiceConfig

STOP_TIMEOUT = 15.0


@dataclass
class RunningService:
    host: str
    port: int
    proto: str
    supervisor: Any
    loop: asyncio.AbstractEventLoop

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def runtime(self) -> Any:
        return self.supervisor.services[0].runtime

    def call(self, func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` in the daemon's loop thread and return its result
        (for reading runtime state without racing the loop)."""
        import concurrent.futures

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(func(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)


@contextmanager
def running_services(configs: list[ServiceConfig], *, grace: float = 2.0) -> Iterator[list[RunningService]]:
    """Serve ``configs`` from a Supervisor in a background thread."""
    from inetkit.io.aio import new_event_loop
    from inetkit.supervisor import Supervisor

    supervisor = Supervisor(DaemonConfig(services=tuple(configs), source="test", grace=grace), strict=True)
    supervisor.bind_all()
    loop = new_event_loop()
    ready = threading.Event()
    stop_holder: dict[str, asyncio.Event] = {}
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def body() -> None:
            stop = asyncio.Event()
            stop_holder["stop"] = stop
            await supervisor.run(stop, lambda _bound: ready.set())

        try:
            loop.run_until_complete(body())
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="inetkit-test-daemon", daemon=True)
    thread.start()
    if not ready.wait(STOP_TIMEOUT):
        raise TimeoutError("daemon did not become ready")
    if errors:
        raise errors[0]
    running = []
    for bound in supervisor.services:
        host, port = bound.address
        running.append(RunningService(host, port, bound.config.proto, supervisor, loop))
    try:
        yield running
    finally:
        stop = stop_holder.get("stop")
        if stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT + grace)
        if thread.is_alive():
            raise TimeoutError("daemon thread did not stop")
        if errors:
            raise errors[0]


def service_config(
    handler: str | None = None,
    *,
    proto: str = "tcp",
    model: str | None = None,
    options: dict[str, Any] | None = None,
    program: tuple[str, ...] = (),
    name: str | None = None,
    bind: str = "127.0.0.1",
    port: int = 0,
    limits: Limits | None = None,
    **extra: Any,
) -> ServiceConfig:
    """A ServiceConfig with test-friendly defaults (port 0, short idle timeout)."""
    if model is None:
        if program:
            model = "exec" if proto == "tcp" else "wait"
        else:
            from inetkit.services.registry import default_model

            model = default_model(handler or "", proto)
    return ServiceConfig(
        name=name or handler or "program", port=port, proto=proto, model=model,  # type: ignore[arg-type]
        bind=bind, handler=handler, program=tuple(program), options=dict(options or {}),
        limits=limits or Limits(idle_timeout=10.0), source="test", **extra,
    )


@contextmanager
def running_service(handler: str | None = None, **kwargs: Any) -> Iterator[RunningService]:
    """One service (see ``service_config`` for the arguments)."""
    with running_services([service_config(handler, **kwargs)]) as services:
        yield services[0]


# -- the real command ---------------------------------------------------------------

_ROW = re.compile(r"^\s+(\S+)\s+(tcp|udp)\s+\[?([^\]\s]*?)\]?:(\d+)\s+(\S+)")


@dataclass
class RunningDaemon:
    process: subprocess.Popen[str]
    ports: dict[tuple[str, str], int] = field(default_factory=dict)
    stdout_lines: list[str] = field(default_factory=list)

    def port(self, name: str, proto: str = "tcp") -> int:
        return self.ports[(name, proto)]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def running_daemon(
    *args: str,
    config_text: str | None = None,
    tmp_path: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[RunningDaemon]:
    """Start ``inetkit serve ARGS`` (with ``config_text`` written to a file when
    given), wait for its 'inetkit: ready' line, stop it with SIGTERM at the end."""
    argv = [sys.executable, "-m", "inetkit.cli.main", "serve", *args]
    if config_text is not None:
        if tmp_path is None:
            raise ValueError("config_text needs tmp_path")
        path = tmp_path / "inetkit-test.toml"
        path.write_text(config_text)
        argv += ["-c", str(path)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=None, text=True, env={**os.environ, **(env or {})},
    )
    daemon = RunningDaemon(proc)
    try:
        _wait_ready(daemon, timeout)
        yield daemon
    finally:
        stop_process(proc)


def _wait_ready(daemon: RunningDaemon, timeout: float) -> None:
    assert daemon.process.stdout is not None
    result: list[str] = []

    def read() -> None:
        assert daemon.process.stdout is not None
        for line in daemon.process.stdout:
            daemon.stdout_lines.append(line)
            m = _ROW.match(line)
            if m and "FAILED" not in line:
                daemon.ports[(m.group(1), m.group(2))] = int(m.group(4))
            if line.startswith("inetkit: ready"):
                result.append(line)
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        code = daemon.process.poll()
        raise RuntimeError(f"inetkit serve not ready (exit code {code}); output: {''.join(daemon.stdout_lines)!r}")
    # keep draining stdout so the daemon never blocks on a full pipe
    def drain() -> None:
        assert daemon.process.stdout is not None
        for line in daemon.process.stdout:
            daemon.stdout_lines.append(line)

    threading.Thread(target=drain, daemon=True).start()


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the process we started (by PID), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    return proc.returncode
