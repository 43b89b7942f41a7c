"""``inetkit echo``: the recvn echo client of lecture 004 (port 9000 in the default config).

Reads stdin line by line (interactive or piped); each line is sent without its
newline, then exactly that many bytes are read back (``recvn``) and printed::

    [TCP client] 5 bytes sent
    [TCP client] 5 bytes received
    [received data] hello

An empty line or EOF ends the session.  A server that closes early is a
short reply: exit status 1 with a message.
"""

from __future__ import annotations

import argparse
import sys

from inetkit.cli.seedcommon import add_address, check_port, client_failure

#: the most one line may hold; a longer line is refused rather than cut
MAX_LINE = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Echo client of lecture 004 (TCP, default config port 9000): send each stdin line "
                          "without its newline, read back exactly as many bytes (recvn); an empty line or EOF ends.")
    add_address(parser)


def run(args: argparse.Namespace) -> int:
    from inetkit.clients.echo import EchoClient
    from inetkit.clients.simple import ClientError

    problem = check_port(args.port)
    if problem:
        return client_failure(ValueError(problem))
    stdin = sys.stdin.buffer
    interactive = sys.stdin.isatty()
    try:
        with EchoClient((args.host, args.port), args.timeout) as client:
            while True:
                if interactive:
                    print("\n[send data] ", end="", flush=True)
                line = stdin.readline(MAX_LINE + 1)
                if len(line) > MAX_LINE:
                    return client_failure(ValueError(f"a line longer than {MAX_LINE} bytes; not sent"))
                data = line.rstrip(b"\n")
                if data.endswith(b"\r"):
                    data = data[:-1]
                if not data:
                    break
                print(f"[TCP client] {len(data)} bytes sent", flush=True)
                reply = client.exchange(data)
                print(f"[TCP client] {len(reply)} bytes received", flush=True)
                print(f"[received data] {reply.decode('utf-8', 'replace')}", flush=True)
    except ClientError as exc:
        return client_failure(exc)
    return 0
