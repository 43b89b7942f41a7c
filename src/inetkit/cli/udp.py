"""``inetkit udp``: the UDP client of seed 000 §12-3 (port 9005).

Sends TEXT (default ``I am a client``) plus its NUL in one datagram, as the
seed's ``sendto(..., strlen(buf)+1, ...)``, and prints ``** From Server : <reply>``.
UDP can drop either datagram: the request is repeated after --timeout, up to
--retries more times.
"""

from __future__ import annotations

import argparse

from inetkit.cli.seedcommon import add_address, check_port, client_failure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "UDP client of seed 000 §12-3: send 'I am a client' + NUL, print the reply (9005)."
    add_address(parser, timeout=1.0)
    parser.add_argument("text", nargs="?", default="I am a client", help="text to send (default: 'I am a client')")
    parser.add_argument("--retries", type=int, default=3, help="times to resend when no reply came (default 3)")
    parser.add_argument("--no-nul", action="store_true", help="send the text without the seed's trailing NUL")


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.simple import ClientError
    from inetkit.clients.udp import udp_exchange
    from inetkit.proto.hello import datagram_text

    problem = check_port(args.port) or (None if args.retries >= 0 else "--retries must not be negative")
    if problem:
        return client_failure(ValueError(problem))
    payload = args.text.encode("utf-8") + (b"" if args.no_nul else b"\x00")
    try:
        reply, _attempts = udp_exchange((args.host, args.port), payload, timeout=args.timeout, retries=args.retries)
    except ClientError as exc:
        return client_failure(exc)
    print(f"** From Server : {datagram_text(reply)}", flush=True)
    return 0
