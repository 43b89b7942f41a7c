"""``inetkit serve``: the super-server."""

from __future__ import annotations

import argparse
from typing import Any

from inetkit.cli.common import EXIT_CONFIG, EXIT_UNAVAILABLE, fail
from inetkit.cli.configsource import add_config_arguments, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "When every service is bound, one line per service (name, proto, address:port, model) "
        "is printed on stdout, then a line starting with 'inetkit: ready'. Logs go to stderr. "
        "SIGHUP re-reads the config from the same source (changed services are replaced, unchanged "
        "ones and every established connection are kept; a bad config is refused and logged). "
        "SIGTERM or Ctrl-C stops accepting and drains live connections for the grace period, then "
        "stops what is left. Sockets passed by systemd (LISTEN_FDS) are used for the services they "
        "match by name or address. `inetkit status` asks the control socket."
    )
    add_config_arguments(parser)
    parser.add_argument("--strict", action="store_true", help="exit if any service cannot be bound (default: report it, serve the rest)")
    parser.add_argument("--log-format", choices=("plain", "json"), help="log line format on stderr (default: the config's, plain)")
    parser.add_argument("--no-connection-log", action="store_true", help="do not log one line per connection")
    control = parser.add_mutually_exclusive_group()
    control.add_argument("--control", metavar="PATH",
                         help="control socket for `inetkit status` (default: [daemon] control_socket, else "
                              "$XDG_RUNTIME_DIR/inetkit.sock, /run/inetkit.sock as root, /tmp/inetkit-UID/inetkit.sock)")
    control.add_argument("--no-control", action="store_true", help="open no control socket")


def run(args: argparse.Namespace) -> int:
    from inetkit.cli.common import service_table
    from inetkit.errors import ConfigError
    from inetkit.logs import setup_logging
    from inetkit.supervisor import BindError, Supervisor, raise_fd_limit, serve_forever

    try:
        config = load_config(args)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    setup_logging(args.log_format or config.log_format)
    raise_fd_limit()
    try:
        from inetkit.activation import Activation, listen_fds

        activation = Activation(listen_fds())
    except (ValueError, OSError) as exc:
        return fail(f"socket activation: {exc}", EXIT_CONFIG)
    if args.no_control:
        control_path = None
    else:
        from inetkit.control import default_control_path

        control_path = args.control or config.control_socket or default_control_path()
    supervisor = Supervisor(
        config, strict=args.strict, connection_log=not args.no_connection_log,
        loader=lambda: load_config(args), control_path=control_path, activation=activation,
    )
    try:
        supervisor.bind_all()
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except BindError as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)

    def on_ready(bound: list[Any]) -> None:
        ok = [b for b in bound if not b.error]
        print(service_table([b.describe() for b in bound]))
        control = f"; control socket {supervisor.control.path}" if supervisor.control is not None else ""
        print(f"inetkit: ready, {len(ok)} of {len(bound)} services bound{control}", flush=True)

    return serve_forever(supervisor, on_ready)
