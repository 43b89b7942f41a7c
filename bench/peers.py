"""Which peer programs are present, and how to get the missing ones.

The bench installs nothing: a missing peer makes the measurements that need
it "not measured", with the command that would install it.
"""

from __future__ import annotations

from inetkit.testing.peers import find_peer

#: program -> Debian package providing it
PACKAGES = {
    "xinetd": "xinetd", "socat": "socat", "nc": "netcat-openbsd", "iperf3": "iperf3",
    "in.tftpd": "tftpd-hpa", "atftpd": "atftpd", "curl": "curl", "tftp": "tftp-hpa",
    "atftp": "atftp", "taskset": "util-linux",
}
#: servers are unpacked into .peers/ rather than installed (they conflict / start daemons)
UNPACKED = {"xinetd", "in.tftpd", "atftpd"}


class PeerMissing(RuntimeError):
    """A peer program is not installed; the message says how to install it."""


def install_hint(program: str) -> str:
    package = PACKAGES.get(program, program)
    if program in UNPACKED:
        return f"{program} missing: run tools/install-peers.sh (unpacks {package} into .peers/)"
    return f"{program} missing: apt-get install {package} (or tools/install-peers.sh)"


def require(program: str) -> str:
    """Absolute path of ``program``; PeerMissing (with the install hint) if absent."""
    path = find_peer(program)
    if path is None:
        raise PeerMissing(install_hint(program))
    return path


def available(program: str) -> bool:
    return find_peer(program) is not None
