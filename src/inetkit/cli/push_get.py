"""``inetkit push-get HOST PORT -o FILE``: the lecture-004 file client.

Receives until the server closes its side, saves the bytes, answers
``Thank you`` (like the seed's client) and exits 0; any failure is one line
on stderr and a non-zero exit, and no partial file is left under FILE.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("-o", "--output", default="-", help="where to save the file ('-', the default: standard output)")
    parser.add_argument("--reply", default="Thank you\n", help="what to answer after EOF (default: 'Thank you\\n')")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds without progress before giving up")


def run(args: argparse.Namespace) -> int:
    from inetkit.cli.common import fail
    from inetkit.cli.files import exit_code
    from inetkit.clients.files import TransferError
    from inetkit.clients.push import push_get

    if not 0 < args.port < 65536:
        return fail(f"port out of range: {args.port}", 2)
    try:
        push_get(args.host, args.port, args.output, reply=args.reply.encode("utf-8"), timeout=args.timeout)
    except TransferError as exc:
        return fail(str(exc), exit_code(exc))
    return 0
