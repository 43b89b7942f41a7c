"""``inetkit send`` / ``get`` / ``ls``: the client of the ``files`` service (FX1).

    inetkit send FILE HOST PORT [--as NAME]         (FILE '-': standard input)
    inetkit get HOST PORT NAME [-o FILE] [--resume] [--check sha256|blake3|auto]
                                                    (FILE '-': standard output)
    inetkit ls HOST PORT

On a terminal a progress bar shows rate and ETA (rich, on stderr); piped, the
commands are quiet.  Every failure is one line on stderr and a non-zero exit:
1 refused/failed, 69 unreachable, 75 timeout, 76 protocol error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_PROTOCOL = 76  # sysexits EX_PROTOCOL


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "send":
        parser.add_argument("file", help="file to upload ('-': standard input, spooled to a temporary file)")
        parser.add_argument("host")
        parser.add_argument("port", type=int)
        parser.add_argument("--as", dest="name", help="name on the server (default: the file's base name)")
    elif command == "get":
        parser.add_argument("host")
        parser.add_argument("port", type=int)
        parser.add_argument("name", help="file name on the server (see `inetkit ls`)")
        parser.add_argument("-o", "--output", help="where to save ('-': standard output; default: NAME's base name)")
        parser.add_argument("--resume", action="store_true", help="continue OUTPUT.part left by an interrupted get")
        parser.add_argument("--check", choices=("sha256", "blake3", "auto"), default="sha256",
                            help="digest verified over the whole file (default sha256; blake3 is about 4x "
                                 "cheaper; auto: BLAKE3 when the blake3 package is installed and the server "
                                 "offers it, else SHA-256)")
    else:
        parser.add_argument("host")
        parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds without progress before giving up")
    if command != "ls":
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar even on a terminal")


def exit_code(exc: Any) -> int:
    from inetkit.cli.common import EXIT_FAILURE, EXIT_TIMEOUT, EXIT_UNAVAILABLE

    return {"unreachable": EXIT_UNAVAILABLE, "timeout": EXIT_TIMEOUT, "protocol": EXIT_PROTOCOL}.get(exc.kind, EXIT_FAILURE)


def run(args: argparse.Namespace) -> int:
    from inetkit.cli.common import fail
    from inetkit.clients.files import TransferError

    if not 0 < args.port < 65536:
        return fail(f"port out of range: {args.port}", 2)
    try:
        if args.command == "ls":
            return _ls(args)
        if args.command == "send":
            return _send(args)
        return _get(args)
    except TransferError as exc:
        return fail(str(exc), exit_code(exc))


def _ls(args: argparse.Namespace) -> int:
    from inetkit.clients.files import list_files

    entries = list_files(args.host, args.port, timeout=args.timeout)
    width = max((len(str(e.size)) for e in entries), default=1)
    out = sys.stdout
    for entry in entries:
        out.write(f"{str(entry.size).rjust(width)}  {entry.name}\n")
    out.flush()
    return 0


def _send(args: argparse.Namespace) -> int:
    import os

    from inetkit.cli.common import fail
    from inetkit.clients.files import upload

    name = args.name or (None if args.file == "-" else os.path.basename(args.file))
    if not name:
        return fail("send: reading standard input needs --as NAME", 2)
    with _progress(args) as bars:
        hashing = bars.task(f"sha256 {name}") if args.file != "-" else None
        result = upload(args.host, args.port, args.file, name, timeout=args.timeout,
                        progress=bars.task(f"send {name}"), hash_progress=hashing)
    if _interactive(args):
        resumed = f", resumed at {result.offset}" if result.offset else ""
        print(f"sent {name}: {result.size} bytes, sha256 {result.digest} verified{resumed}", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace) -> int:
    import os
    import posixpath

    from inetkit.cli.common import fail
    from inetkit.clients.files import download

    output = args.output or posixpath.basename(args.name)
    if output != "-" and os.path.isdir(output):
        output = os.path.join(output, posixpath.basename(args.name))
    if output == "-" and args.resume:
        return fail("get: --resume needs an output file, not standard output", 2)
    with _progress(args) as bars:
        result = download(args.host, args.port, args.name, output, resume=args.resume, timeout=args.timeout,
                          progress=bars.task(f"get {args.name}"), check=args.check)
    if _interactive(args) and output != "-":
        resumed = f", resumed at {result.offset}" if result.offset else ""
        if result.check == "sha256":
            checked = f"sha256 {result.digest} verified"
        else:
            checked = f"{result.check} {result.checked} verified (sha256 {result.digest} as announced)"
        print(f"saved {output}: {result.size} bytes, {checked}{resumed}", file=sys.stderr)
    return 0


def _interactive(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


class _progress:
    """Rich progress bars (bytes, rate, ETA) on a terminal; no-ops otherwise.

    ``task(label)`` adds a bar and returns its ``(done, total)`` callback, or
    None when not on a terminal."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.enabled = _interactive(args)
        self.bar: Any = None

    def __enter__(self) -> _progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
        return self

    def task(self, label: str) -> Callable[[int, int], None] | None:
        if self.bar is None:
            return None
        import time

        bar = self.bar
        task = bar.add_task(label, total=None)
        last = [0.0]

        def update(done: int, total: int) -> None:
            now = time.monotonic()
            # rich redraws on its own timer; updating per 1 MiB chunk would only burn CPU
            if now - last[0] >= 0.1 or done == total:
                last[0] = now
                bar.update(task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
