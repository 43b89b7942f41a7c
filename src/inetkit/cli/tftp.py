"""``inetkit tftp get|put``: the TFTP client command.

    inetkit tftp get HOST[:PORT] REMOTE [LOCAL]
    inetkit tftp put LOCAL HOST[:PORT] [REMOTE]

A progress bar (rate, ETA when the size is known) is drawn on a terminal
only; piped or redirected, the command prints nothing but errors and a
one-line summary with ``-v``.  Exit status: 0 on success, 1 when the server
refused (its ERROR explained), 75 on timeout, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from inetkit.cli.common import (
    EXIT_FAILURE,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
)

DEFAULT_PORT = 69


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="get|put", required=True)
    get = sub.add_parser("get", help="download REMOTE into LOCAL (default: its base name)")
    get.add_argument("server", metavar="HOST[:PORT]")
    get.add_argument("remote", metavar="REMOTE")
    get.add_argument("local", metavar="LOCAL", nargs="?")
    put = sub.add_parser("put", help="upload LOCAL as REMOTE (default: its base name)")
    put.add_argument("local", metavar="LOCAL")
    put.add_argument("server", metavar="HOST[:PORT]")
    put.add_argument("remote", metavar="REMOTE", nargs="?")
    for p in (get, put):
        p.add_argument("--port", "-p", type=int, default=None, help=f"server port (default {DEFAULT_PORT}; HOST:PORT wins)")
        p.add_argument("--blksize", "-b", type=int, default=None, help="block size to ask for (8..65464; default 512)")
        p.add_argument("--windowsize", "-w", type=int, default=None, help="blocks per ACK to ask for (RFC 7440; default 1)")
        p.add_argument("--timeout", "-t", type=float, default=1.0, help="initial retransmission timeout in seconds (default 1)")
        p.add_argument("--mode", "-m", choices=("octet", "netascii"), default="octet", help="transfer mode (default octet)")
        p.add_argument("--no-tsize", action="store_true", help="do not send the tsize option")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        p.add_argument("--verbose", "-v", action="store_true", help="print a summary line (rate, options granted)")


def _server(text: str, port: int | None) -> tuple[str, int]:
    from inetkit.io.addresses import split_host_port

    host, parsed = split_host_port(text, port if port is not None else DEFAULT_PORT)
    return host, parsed


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.tftp import TftpError, get_file, put_file

    try:
        host, port = _server(args.server, args.port)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.blksize is not None and not 8 <= args.blksize <= 65464:
        return fail(f"--blksize must be 8..65464, not {args.blksize}", EXIT_USAGE)
    if args.windowsize is not None and not 1 <= args.windowsize <= 65535:
        return fail(f"--windowsize must be 1..65535, not {args.windowsize}", EXIT_USAGE)
    if not 0 < args.timeout <= 255:
        return fail(f"--timeout must be in (0, 255] seconds, not {args.timeout}", EXIT_USAGE)
    kwargs = {"mode": args.mode, "blksize": args.blksize, "windowsize": args.windowsize,
              "timeout": args.timeout, "tsize": not args.no_tsize}
    if args.action == "get":
        remote = args.remote
        local = args.local or os.path.basename(remote.replace("\\", "/")) or "download"
        if os.path.isdir(local):
            local = os.path.join(local, os.path.basename(remote.replace("\\", "/")))
        label = f"get {remote}"
    else:
        local = args.local
        if not os.path.isfile(local):
            return fail(f"{local}: no such file" if not os.path.exists(local) else f"{local}: not a regular file")
        remote = args.remote or os.path.basename(local)
        label = f"put {remote}"
    show = not args.quiet and sys.stderr.isatty()
    try:
        with _progress(label, show) as progress:
            if args.action == "get":
                result = get_file(host, port, remote, local, progress=progress, **kwargs)
            else:
                result = put_file(host, port, local, remote, progress=progress, **kwargs)
    except TftpError as exc:
        code = EXIT_TIMEOUT if not exc.remote and "timed out" in str(exc) else EXIT_FAILURE
        return fail(f"tftp {args.action} {remote}: {exc}", code)
    except OSError as exc:
        import socket

        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
            return fail(f"tftp {args.action}: cannot reach {host}:{port}: {exc}", EXIT_UNAVAILABLE)
        return fail(f"tftp {args.action} {remote}: {exc.strerror or exc}")
    if args.verbose:
        granted = "options granted" if result.negotiated else "options ignored by the server (RFC 1350 defaults)"
        print(f"{args.action} {remote}: {result.bytes} bytes in {result.elapsed:.3f} s "
              f"({result.rate / 1048576:.1f} MiB/s), blksize {result.blksize}, windowsize {result.windowsize}, "
              f"{granted}, {result.retransmissions} retransmissions", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on a terminal; a no-op callback otherwise."""

    def __init__(self, label: str, show: bool) -> None:
        self.label = label
        self.show = show
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int | None], None] | None:
        if not self.show:
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
                             console=_stderr_console())
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=None)

        def update(done: int, total: int | None) -> None:
            self._bar.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
