"""systemd socket activation (sd_listen_fds(3)): adopt pre-bound sockets.

systemd (or any launcher speaking its protocol) starts the daemon with the
sockets already bound at descriptors 3, 4, ... and sets:

- ``LISTEN_PID``: the PID the sockets are meant for.  If it is not ours the
  variables were inherited by accident (we are some child) and are ignored.
- ``LISTEN_FDS``: how many descriptors, starting at 3 (``SD_LISTEN_FDS_START``).
- ``LISTEN_FDNAMES``: optional, colon-separated names (``FileDescriptorName=``,
  by default the socket unit's name).

The variables are removed once read, as ``sd_listen_fds(1)`` does, so the
programs inetkit execs do not believe the sockets are theirs.  Each adopted
socket is matched to a configured service by name (the descriptor's name is
the service name, ``name/proto``, or ``name.socket``), else by address (same
transport and port, and the same bind address or a wildcard one).  A socket
that matches no service is closed with a warning.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import MutableMapping

from inetkit.config.schema import ServiceConfig
from inetkit.io.addresses import plain_address

log = logging.getLogger("inetkit.daemon")

SD_LISTEN_FDS_START = 3


@dataclass
class ActivatedSocket:
    sock: socket.socket
    name: str

    @property
    def proto(self) -> str:
        return "tcp" if self.sock.type == socket.SOCK_STREAM else "udp"


def listen_fds(environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> list[ActivatedSocket]:
    """The sockets passed to this process, or ``[]`` when none were.
    Raises ValueError when the variables are malformed."""
    env = os.environ if environ is None else environ
    count = env.get("LISTEN_FDS")
    pid = env.get("LISTEN_PID")
    names_text = env.get("LISTEN_FDNAMES", "")
    if unset:
        for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if not count:
        return []
    if not count.isdigit() or (pid is not None and not pid.isdigit()):
        raise ValueError(f"malformed LISTEN_FDS={count!r} / LISTEN_PID={pid!r}")
    if pid is None or int(pid) != os.getpid():
        return []  # meant for another process
    names = names_text.split(":") if names_text else []
    adopted = []
    for index in range(int(count)):
        fd = SD_LISTEN_FDS_START + index
        try:
            sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
        except OSError as exc:
            log.warning("activation: descriptor %d is not a usable socket: %s", fd, exc)
            continue
        sock.set_inheritable(False)  # ours, not our children's
        adopted.append(ActivatedSocket(sock, names[index] if index < len(names) else ""))
    return adopted


def _same_host(bound: str, wanted: str) -> bool:
    if bound == wanted:
        return True
    wildcard = {"", "0.0.0.0", "::"}
    return bound in wildcard and wanted in wildcard


class Activation:
    """Hands adopted sockets to the services that match them."""

    def __init__(self, sockets: list[ActivatedSocket]) -> None:
        self.pool = list(sockets)

    def __bool__(self) -> bool:
        return bool(self.pool)

    def take(self, service: ServiceConfig) -> socket.socket | None:
        """The adopted socket for ``service`` (removed from the pool), or None."""
        candidates = [a for a in self.pool if a.proto == service.proto]
        chosen = None
        for a in candidates:
            name = a.name[: -len(".socket")] if a.name.endswith(".socket") else a.name
            if name and name in (service.name, service.key):
                chosen = a
                break
        if chosen is None and service.port:
            for a in candidates:
                try:
                    host, port = plain_address(a.sock.getsockname())
                except OSError:
                    continue
                if port == service.port and _same_host(host, service.bind):
                    chosen = a
                    break
        if chosen is None:
            return None
        self.pool.remove(chosen)
        sock = chosen.sock
        if service.proto == "tcp":
            sock.listen(service.backlog)  # harmless if already listening; sets our backlog
        sock.setblocking(False)
        return sock

    def close_unused(self) -> None:
        for a in self.pool:
            try:
                where = a.sock.getsockname()
            except OSError:
                where = "?"
            log.warning("activation: no service matches socket %r (%s %s); closing it", a.name, a.proto, where)
            a.sock.close()
        self.pool.clear()
