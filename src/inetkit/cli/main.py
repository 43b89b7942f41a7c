"""``inetkit`` entry point.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``inetkit --help``
starts without loading asyncio, services or clients.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module, one-line summary, seed section it maps to)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("inetkit.cli.serve", "run the super-server (embedded default config unless -c/--inetd-conf)"),
    "run": ("inetkit.cli.run", "run one built-in service ad hoc on a port and model of your choice"),
    "check": ("inetkit.cli.check", "validate a config and print its service table"),
    "status": ("inetkit.cli.status", "show a running daemon's services, connections and counters"),
    "greet": ("inetkit.cli.greet", "greeting client: read the welcome, send a message (seed 12-2-1, 12-2-2, 12-2-3, 12-2-4)"),
    "udp": ("inetkit.cli.udp", "UDP request/reply client with timeout and retries (seed 12-3)"),
    "hello": ("inetkit.cli.hello", "hello client over TCP or UDP (seed 002 basics)"),
    "echo": ("inetkit.cli.echo", "echo client that reads back exactly what it sent, recvn (seed 004)"),
    "push-get": ("inetkit.cli.push_get", "file-push client: receive to EOF, answer 'Thank you' (seed 004)"),
    "chat": ("inetkit.cli.chat", "full-duplex chat client, or one-to-one chat (seed 002 practice 1)"),
    "udp-send": ("inetkit.cli.udp_send", "send a file as raw datagrams ending in DONE (seed 002 practice 2)"),
    "tftp": ("inetkit.cli.tftp", "TFTP client: get and put with blksize, windowsize, tsize"),
    "send": ("inetkit.cli.files", "upload a file to an inetkit 'files' service (verified, resumable)"),
    "get": ("inetkit.cli.files", "download a file from an inetkit 'files' service (verified, resumable)"),
    "ls": ("inetkit.cli.files", "list the files of an inetkit 'files' service"),
    "demo": ("inetkit.cli.demo", "walk through every scenario of the socket chapter against a live daemon"),
}


def _usage() -> str:
    from inetkit import __version__

    width = max(map(len, COMMANDS))
    lines = [
        f"inetkit {__version__}: an inetd-style super-server and socket-service toolkit",
        "",
        "usage: inetkit COMMAND [options]     (inetkit COMMAND --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Start here: `inetkit serve` runs every built-in service on 127.0.0.1 (see `inetkit check`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from inetkit import __version__

        print(f"inetkit {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"inetkit: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, summary = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"inetkit: command {command!r} is not available in this build ({exc})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"inetkit {command}", description=summary)
    module.add_arguments(parser, command) if _takes_command(module.add_arguments) else module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    args.command = command
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("inetkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def _takes_command(func: object) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and code.co_argcount >= 2


if __name__ == "__main__":
    sys.exit(main())
