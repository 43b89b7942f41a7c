"""Start the servers being compared: inetkit (the real ``inetkit serve``
command on a generated config), the peers (xinetd, socat, ...) and the bench's
own reference servers (``bench/refservers.py``).  Each returns a ``Server``
whose PID tree is measured and which is stopped by PID.

Every server listens on 127.0.0.1.  inetkit and the reference servers bind
port 0 and announce the port they got (readiness is that announcement); the
peers get a port picked free just before and are waited for by connecting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from bench.peers import require
from bench.procs import Server, free_port, popen, stop_process, wait_port

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 20.0
_ROW = re.compile(r"^\s+(\S+)\s+(tcp|udp)\s+\[?([^\]\s]*?)\]?:(\d+)\s+(\S+)")


def _env() -> dict[str, str]:
    """The environment for child pythons: the repo on the path so that the
    bench-only handlers (``bench.handlers:...``) import in inetkit's workers."""
    env = dict(os.environ)
    bytecode_env(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    return env


#: where the Python processes the bench starts keep their bytecode cache
PYCACHE = Path(tempfile.gettempdir()) / "inetkit-bench-pycache"


def bytecode_env(env: dict[str, str]) -> dict[str, str]:
    """Let started Pythons cache bytecode, as on an ordinary install (this
    machine's shells export PYTHONDONTWRITEBYTECODE=1, which would make every
    interpreter start, and every lazy import, compile from source); the cache
    goes to a folder outside the repository."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def toml_value(value: Any) -> str:
    """A TOML literal for the small set of values the bench writes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def inetkit_config(services: dict[str, dict[str, Any]]) -> str:
    """TOML text for ``services`` (name -> keys; 'options' and 'limits' become sub-tables)."""
    lines = ["[daemon]", 'bind = "127.0.0.1"', "grace = 2", ""]
    for name, keys in services.items():
        lines.append(f"[services.{name}]")
        tables = {}
        for key, value in keys.items():
            if isinstance(value, dict):
                tables[key] = value
            else:
                lines.append(f"{key} = {toml_value(value)}")
        for table, values in tables.items():
            lines.append(f"[services.{name}.{table}]")
            for key, value in values.items():
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def read_ready(proc: subprocess.Popen[str], timeout: float, marker: str = "inetkit: ready") -> list[str]:
    """Lines of ``proc``'s stdout up to and including the one starting with
    ``marker``; RuntimeError if it exits or stays silent for ``timeout``."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(marker):
                done.set()
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    if not lines or not lines[-1].startswith(marker):
        code = proc.poll()
        stop_process(proc)
        raise RuntimeError(f"{proc.args!r} not ready (exit {code}); stdout: {''.join(lines)!r}")
    # keep draining stdout so the server never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return lines


@contextlib.contextmanager
def source_first(src: str | None) -> Iterator[None]:
    """Servers started inside run with ``src`` (another tree's ``src``, e.g. a
    git worktree's) first on their path: old code beside new.  None: no change."""
    global _env
    base_env = _env
    if src is not None:
        _env = lambda: {**base_env(), "PYTHONPATH": os.pathsep.join([src, base_env()["PYTHONPATH"]])}
    try:
        yield
    finally:
        _env = base_env


def start_inetkit(
    label: str,
    services: dict[str, dict[str, Any]],
    *,
    connection_log: bool = False,
    pin: str | None = None,
    workdir: Path | None = None,
    main_module: str = "inetkit.cli.main",
) -> Server:
    """``inetkit serve -c CONF`` on a generated config; ports come from its table.

    ``services`` maps a service name to its TOML keys (port defaults to 0).
    Logs go to a file in the work directory, as a daemon's would.
    ``main_module`` runs instead of inetkit's CLI (a measurement wrapper
    that ends by calling it, e.g. ``bench.logtoggle``).
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="inetkit-bench-"))
    conf = workdir / f"{label.replace(' ', '_').replace('/', '_')}.toml"
    conf.write_text(inetkit_config({n: {"port": 0, **k} for n, k in services.items()}))
    log = open(workdir / (conf.stem + ".log"), "ab")
    argv = [sys.executable, "-m", main_module, "serve", "-c", str(conf), "--strict",
            "--control", str(workdir / f"{conf.stem}.sock")]
    if not connection_log:
        argv.append("--no-connection-log")
    proc = popen(argv, pin=pin, stdout=subprocess.PIPE, stderr=log, text=True, env=_env())
    log.close()
    lines = read_ready(proc, READY_TIMEOUT)
    ports: dict[str, int] = {}
    for line in lines:
        m = _ROW.match(line)
        if m:
            ports[f"{m.group(1)}/{m.group(2)}"] = int(m.group(4))
    first = next(iter(ports.values()))
    return Server(label, proc, first, ports, cleanup=[workdir])


def start_reference(label: str, kind: str, *args: str, pin: str | None = None) -> Server:
    """``python -m bench.refservers KIND ...``: prints ``port N`` once bound."""
    argv = [sys.executable, "-m", "bench.refservers", kind, *args]
    proc = popen(argv, pin=pin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=REPO)
    lines = read_ready(proc, READY_TIMEOUT, marker="port ")
    return Server(label, proc, int(lines[-1].split()[1]))


XINETD_DEFAULTS = """defaults
{
    instances = UNLIMITED
    per_source = UNLIMITED
    cps = 1000000 1
}
"""

XINETD_SERVICE = """service {name}
{{
    type = INTERNAL UNLISTED
    id = {id}
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    bind = 127.0.0.1
    port = {port}
    instances = UNLIMITED
    per_source = UNLIMITED
    cps = 1000000 1
    flags = REUSE
}}
"""


def start_xinetd(label: str, internal_id: str, pin: str | None = None) -> Server:
    """xinetd in the foreground with one INTERNAL service (``echo-stream``,
    ``daytime-stream``...), connection rate limits raised, no per-connection
    logging (no log_type, no log_on_success/failure)."""
    xinetd = require("xinetd")
    workdir = Path(tempfile.mkdtemp(prefix="xinetd-bench-"))
    port = free_port()
    conf = workdir / "xinetd.conf"
    # xinetd finds an internal service by the service name (echo, daytime...)
    conf.write_text(XINETD_DEFAULTS + XINETD_SERVICE.format(name=internal_id.split("-")[0], id=internal_id, port=port))
    proc = popen([xinetd, "-f", str(conf), "-dontfork", "-filelog", str(workdir / "xinetd.log"),
                  "-pidfile", str(workdir / "pid")], pin=pin,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
    except Exception:
        stop_process(proc)
        raise
    return Server(label, proc, port, cleanup=[workdir])


def start_socat(label: str, target: list[str] | str, pin: str | None = None) -> Server:
    """``socat TCP4-LISTEN:PORT,fork,... TARGET`` (PIPE for echo, EXEC:... for exec)."""
    socat = require("socat")
    port = free_port()
    address = f"TCP4-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=1024"
    target_text = target if isinstance(target, str) else " ".join(target)
    proc = popen([socat, address, target_text], pin=pin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
    except Exception:
        stop_process(proc)
        raise
    return Server(label, proc, port)
