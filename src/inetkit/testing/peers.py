"""Find the real peer programs (curl, tftp, atftp, nc, socat, in.tftpd,
atftpd, xinetd) for interop tests and benchmarks.

Clients come from PATH.  Servers are looked up in the folder that
``tools/install-peers.sh`` unpacks them into (``$INETKIT_PEERS``, default
``.peers/`` at the repository root), then on PATH and in /usr/sbin.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: program -> (package folder under the peers dir, path inside it)
SERVERS = {
    "in.tftpd": ("tftpd-hpa", "usr/sbin/in.tftpd"),
    "atftpd": ("atftpd", "usr/sbin/atftpd"),
    "xinetd": ("xinetd", "usr/sbin/xinetd"),
}


def peers_dir() -> Path:
    env = os.environ.get("INETKIT_PEERS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / ".peers"


def find_peer(program: str) -> str | None:
    """Absolute path of ``program``, or None when it is not installed."""
    if program in SERVERS:
        folder, inner = SERVERS[program]
        candidate = peers_dir() / folder / inner
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        if program == "in.tftpd":
            return None  # a system in.tftpd may be atftpd's: only trust the unpacked one
    found = shutil.which(program)
    if found:
        return found
    sbin = Path("/usr/sbin") / program
    return str(sbin) if sbin.is_file() else None


def install_hint(program: str) -> str:
    return f"{program} not found: run tools/install-peers.sh (apt-get; servers are unpacked into .peers/)"
