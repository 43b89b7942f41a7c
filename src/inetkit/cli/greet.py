"""``inetkit greet``: the greeting clients of seed 000 §12-2-1 .. §12-2-4.

Default (§12-2-1, §12-2-2): read the server's NUL-terminated greeting, print
``** From server : <text>``, send ``I want a HTTP service`` as the seed does
(a C string zero-padded to 257 bytes), close.  ``--seed 12-2-3`` is the "han"
client (prints ``==>`` lines, reads to EOF, sends nothing); ``--seed 12-2-4``
the "bit" client (``==>`` lines, sends ``I want a Telnet service``).
"""

from __future__ import annotations

import argparse

from inetkit.cli.seedcommon import add_address, check_port, client_failure

SECTIONS = ("12-2-1", "12-2-2", "12-2-3", "12-2-4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Greeting client of seed 000 §12-2-1 (iterative server, 9001) and §12-2-2 (fork server, 9002); "
        "with --seed 12-2-3 the 'han' client (9003), with --seed 12-2-4 the 'bit' client (9004)."
    )
    add_address(parser)
    parser.add_argument("--message", help="text to send (default: the seed's, 'I want a HTTP service' "
                                          "or for 12-2-4 'I want a Telnet service')")
    parser.add_argument("--seed", choices=SECTIONS, default="12-2-1",
                        help="which seed client to reproduce (default 12-2-1)")
    parser.add_argument("--size", type=int, default=257,
                        help="pad the message with zeros to this many bytes, as the seed's sizeof(buf)+1 (default 257; "
                             "0: no padding, just the text and its NUL)")


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.greeting import greet
    from inetkit.clients.simple import ClientError
    from inetkit.errors import LocalProtocolError
    from inetkit.proto.greeting import (
        HTTP_REQUEST,
        TELNET_REQUEST,
        c_string,
        padded_message,
    )

    problem = check_port(args.port)
    if problem:
        return client_failure(ValueError(problem))
    han, bit = args.seed == "12-2-3", args.seed == "12-2-4"
    text = args.message if args.message is not None else (TELNET_REQUEST if bit else HTTP_REQUEST)
    try:
        request = None
        if not han or args.message is not None:
            request = padded_message(text, args.size) if args.size > 0 else c_string(text)
    except LocalProtocolError as exc:
        return client_failure(ValueError(f"--message: {exc}"))
    arrow = han or bit
    if arrow:
        print("==> create socket", flush=True)
    try:
        result = greet(
            (args.host, args.port), request, until_eof=han, timeout=args.timeout,
            on_connect=(lambda: print("==> connect server", flush=True)) if arrow else None,
            on_welcome=lambda w: print(f"==>from server : {w.decoded()}" if arrow else f"** From server : {w.decoded()}",
                                       flush=True),
        )
    except ClientError as exc:
        return client_failure(exc)
    del result  # printed through on_welcome
    return 0
