"""The classic inetd.conf line for in.tftpd (tftpd-hpa) serves real downloads
to curl under inetkit's UDP ``wait`` model."""

from __future__ import annotations

import os
import subprocess

import pytest

from inetkit.testing.peers import find_peer, install_hint
from inetkit.testing.running import running_daemon

pytestmark = pytest.mark.interop


def test_inetd_conf_in_tftpd_line_serves_curl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tftpd, curl = find_peer("in.tftpd"), find_peer("curl")
    if not tftpd or not curl:
        pytest.skip(install_hint("in.tftpd" if not tftpd else "curl"))
    root = tmp_path / "root"
    root.mkdir()
    payload = os.urandom(300_000)
    (root / "boot.bin").write_bytes(payload)
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf = tmp_path / "inetd.conf"
    # port 0 (an inetkit extension) instead of "tftp" so the test needs no fixed port;
    # -t 1: in.tftpd waits only 1 s for more requests before giving the socket back
    conf.write_text(f"0 dgram udp wait {user} {tftpd} in.tftpd -u {user} -t 1 -s {root}\n")
    with running_daemon("--inetd-conf", str(conf)) as daemon:
        port = daemon.port("port0", "udp")
        for attempt in range(2):  # second download after in.tftpd gave the socket back or not
            out = tmp_path / f"got{attempt}.bin"
            result = subprocess.run(
                [curl, "-s", "-S", "--max-time", "20", "-o", str(out), f"tftp://127.0.0.1:{port}/boot.bin"],
                capture_output=True, timeout=30,
            )
            assert result.returncode == 0, result.stderr
            assert out.read_bytes() == payload
