"""systemd-style socket activation: the test binds the sockets, passes them
at fd 3.. with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, and the daemon serves
on them instead of binding its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from inetkit.activation import Activation, listen_fds
from inetkit.testing.net import connect, recv_exactly, udp_request
from inetkit.testing.running import RunningDaemon, _wait_ready, service_config, stop_process

CONFIG = """
[services.byname]
port = 7          # ignored: the socket named "byname" is used
handler = "echo"

[services.byaddr]
port = {port}     # matched by address: the passed socket bound to this port
handler = "echo"
model = "thread"

[services.udpecho]
port = 7
proto = "udp"
handler = "echo"
"""


LAUNCHER = """
import fcntl, os, sys
fds = [int(f) for f in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 3, 4, 5
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)  # dup2 leaves the new descriptor inheritable
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def _listener(kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(16)
    return sock


def test_daemon_serves_on_passed_sockets(tmp_path: Path) -> None:
    named, by_address, udp = _listener(), _listener(), _listener(socket.SOCK_DGRAM)
    sockets = [named, by_address, udp]
    try:
        config = tmp_path / "activated.toml"
        config.write_text(CONFIG.format(port=by_address.getsockname()[1]))
        # a tiny launcher, like systemd: moves the sockets to 3, 4, 5
        # (sd_listen_fds numbering), sets LISTEN_PID to its own PID, and execs
        # the daemon, which keeps that PID
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, ",".join(str(s.fileno()) for s in sockets),
             sys.executable, "-m", "inetkit.cli.main", "serve", "-c", str(config), "--no-control"],
            pass_fds=[s.fileno() for s in sockets], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "LISTEN_FDS": "3", "LISTEN_FDNAMES": "byname:unnamed:udpecho.socket"},
        )
        daemon = RunningDaemon(proc)
        try:
            _wait_ready(daemon, 20.0)
            # the daemon reports the ports of the sockets it was given
            assert daemon.port("byname") == named.getsockname()[1]
            assert daemon.port("byaddr") == by_address.getsockname()[1]
            assert daemon.port("udpecho", "udp") == udp.getsockname()[1]
            # our copies are closed: the daemon's are the only ones left that serve
            for s in sockets:
                s.close()
            for name, port in (("byname", daemon.port("byname")), ("byaddr", daemon.port("byaddr"))):
                with connect(("127.0.0.1", port)) as c:
                    c.sendall(name.encode())
                    assert recv_exactly(c, len(name)) == name.encode()
            assert udp_request(("127.0.0.1", daemon.port("udpecho", "udp")), b"dgram") == b"dgram"
            assert proc.poll() is None
        finally:
            stop_process(proc)
    finally:
        for s in sockets:
            s.close()


def test_listen_fds_ignores_variables_meant_for_another_process() -> None:
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}
    assert listen_fds(env) == []
    assert env == {}  # removed, so exec'd programs do not see them either
    with pytest.raises(ValueError):
        listen_fds({"LISTEN_FDS": "two", "LISTEN_PID": str(os.getpid())})
    assert listen_fds({}) == []


def test_matching_by_name_then_by_address() -> None:
    from inetkit.activation import ActivatedSocket

    a, b, u = _listener(), _listener(), _listener(socket.SOCK_DGRAM)
    try:
        act = Activation([ActivatedSocket(a, "web.socket"), ActivatedSocket(b, ""), ActivatedSocket(u, "web")])
        port_b = b.getsockname()[1]
        assert act.take(service_config("echo", name="web", port=80)) is a  # name wins over port
        assert act.take(service_config("echo", name="other", port=port_b + 1)) is None
        assert act.take(service_config("echo", name="other", port=port_b)) is b
        assert act.take(service_config("echo", name="web", proto="udp")) is u
        assert not act
    finally:
        for s in (a, b, u):
            s.close()
