"""``inetkit hello``: the hello client of seed 002 "basics" (TCP, or UDP with --udp; port 8081 here, 8080 in the seed).

Sends ``Hello from client`` (no NUL), prints ``Hello message sent``, then the
server's reply as ``Message from server: <text>``.
"""

from __future__ import annotations

import argparse

from inetkit.cli.seedcommon import add_address, check_port, client_failure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Hello client of seed 002 basics: send 'Hello from client', print the server's "
                          "'Hello from server' (TCP, or UDP with --udp; default config port 8081).")
    add_address(parser)
    parser.add_argument("--udp", action="store_true", help="use UDP (the seed's second pair)")
    parser.add_argument("--message", default="Hello from client", help="text to send (default: 'Hello from client')")
    parser.add_argument("--retries", type=int, default=2, help="UDP only: resends when no reply came (default 2)")


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.hello import hello_tcp, hello_udp
    from inetkit.clients.simple import ClientError
    from inetkit.proto.hello import message_text

    problem = check_port(args.port)
    if problem:
        return client_failure(ValueError(problem))
    message = args.message.encode("utf-8")
    address = (args.host, args.port)
    try:
        if args.udp:
            print("Hello message sent", flush=True)
            reply = hello_udp(address, message, timeout=args.timeout, retries=args.retries)
        else:
            reply = hello_tcp(address, message, timeout=args.timeout,
                              on_sent=lambda: print("Hello message sent", flush=True))
    except ClientError as exc:
        return client_failure(exc)
    print(f"Message from server: {message_text(reply)}", flush=True)
    return 0
