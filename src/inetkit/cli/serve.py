"""``inetkit serve``: the super-server."""

from __future__ import annotations

import argparse
from inetkit.cli.common import EXIT_CONFIG, EXIT_UNAVAILABLE, fail, service_table
from inetkit.cli.configsource import add_config_arguments, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "When every service is bound, one line per service (name, proto, address:port, model) "
        "is printed on stdout, then a line starting with 'inetkit: ready'. Logs go to stderr. "
        "SIGTERM or Ctrl-C stops accepting and drains live connections for the grace period."
    )
    add_config_arguments(parser)
    parser.add_argument("--strict", action="store_true", help="exit if any service cannot be bound (default: report it, serve the rest)")
    parser.add_argument("--log-format", choices=("plain", "json"), help="log line format on stderr (default: the config's, plain)")
    parser.add_argument("--no-connection-log", action="store_true", help="do not log one line per connection")


def run(args: argparse.Namespace) -> int:
    from inetkit.errors import ConfigError
    from inetkit.logs import setup_logging
    from inetkit.supervisor import BindError, Supervisor

    try:
        config = load_config(args)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    setup_logging(args.log_format or config.log_format)
    supervisor = Supervisor(config, strict=args.strict, connection_log=not args.no_connection_log)
    try:
        supervisor.bind_all()
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except BindError as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)

    def on_ready(bound: list) -> None:  # type: ignore[type-arg]
        ok = [b for b in bound if not b.error]
        print(service_table([b.describe() for b in bound]))
        print(f"inetkit: ready, {len(ok)} of {len(bound)} services bound", flush=True)

    from inetkit.supervisor import serve_forever

    return serve_forever(supervisor, on_ready)

