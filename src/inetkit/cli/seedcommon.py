"""Shared by the seed client commands (greet, udp, hello, echo, demo):
address arguments and the mapping of a ClientError to a message and exit code."""

from __future__ import annotations

import argparse

from inetkit.cli.common import (
    EXIT_FAILURE,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
)

#: ClientError.kind -> exit code
EXIT_CODES = {"refused": EXIT_UNAVAILABLE, "timeout": EXIT_TIMEOUT, "short": EXIT_FAILURE, "io": EXIT_FAILURE}


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0 (a clear usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 3600 seconds")
    return value


def add_address(parser: argparse.ArgumentParser, default_port: int | None = None, timeout: float = 5.0) -> None:
    parser.add_argument("host", help="server address, e.g. 127.0.0.1 or ::1")
    if default_port is None:
        parser.add_argument("port", type=int, help="server port")
    else:
        parser.add_argument("port", type=int, nargs="?", default=default_port,
                            help=f"server port (default {default_port}, the default config's)")
    parser.add_argument("--timeout", type=positive_seconds, default=timeout,
                        help=f"seconds to wait for each step (default {timeout:g})")


def check_port(port: int) -> str | None:
    return None if 0 < port < 65536 else f"port {port} is out of range 1-65535"


def client_failure(exc: Exception) -> int:
    """Print a ClientError (or a usage problem) and return its exit code."""
    kind = getattr(exc, "kind", None)
    if kind is None:
        return fail(str(exc), EXIT_USAGE)
    return fail(str(exc), EXIT_CODES.get(kind, EXIT_FAILURE))
