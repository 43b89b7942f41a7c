"""``inetkit udp-send FILE HOST PORT``: the seed's raw UDP file sender.

Sends FILE as 1024-byte datagrams followed by ``DONE`` and waits for the
receiver's ``DONE`` (002 practice 2 / assignment 2; ``inetkit serve`` runs
the receiver, ``udp-file``, on 8080/udp).  Always warns: this protocol
cannot recover a lost datagram; ``inetkit tftp put`` can.
"""

from __future__ import annotations

import argparse
import os
import sys

from inetkit.cli.common import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, fail

WARNING = ("inetkit: warning: raw UDP has no acknowledgements: a lost, duplicated or reordered datagram "
           "silently corrupts the copy. For a reliable transfer use `inetkit tftp put FILE HOST:PORT`.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("port", metavar="PORT", type=int)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the receiver's DONE (default 2)")
    parser.add_argument("--retries", type=int, default=2, help="times DONE is sent again without an answer (default 2)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds between datagrams, to spare a slow receiver (default 0, as the seed)")


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.udp_file import UdpSendError, send_file

    if not 0 < args.port < 65536:
        return fail(f"port must be 1..65535, not {args.port}", EXIT_USAGE)
    if not os.path.isfile(args.file):
        return fail(f"{args.file}: no such file" if not os.path.exists(args.file) else f"{args.file}: not a regular file")
    print(WARNING, file=sys.stderr)
    try:
        result = send_file(args.file, (args.host, args.port), timeout=args.timeout, retries=args.retries, delay=args.delay)
    except UdpSendError as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    except OSError as exc:
        return fail(f"udp-send: {exc.strerror or exc}", EXIT_FAILURE)
    if result.done_lookalikes:
        print(f"inetkit: warning: {result.done_lookalikes} piece(s) of the file begin with 'DONE'; "
              "the seed's receiver ends the file there", file=sys.stderr)
    print(f"File sent successfully. ({result.bytes} bytes in {result.datagrams} datagrams)")
    return 0
