"""``inetkit run SERVICE``: one built-in service, ad hoc."""

from __future__ import annotations

import argparse
import json

from inetkit.cli.common import EXIT_CONFIG, EXIT_UNAVAILABLE, fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inetkit.services.registry import BUILTIN

    parser.epilog = (
        f"Built-in services: {', '.join(sorted(BUILTIN))}. "
        "Prints 'NAME PROTO ADDRESS PORT MODEL' once bound (useful with --port 0), then serves until Ctrl-C."
    )
    parser.add_argument("service", help="a built-in service name")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: the OS chooses)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--model", help="server model (default: the service's own)")
    parser.add_argument("--workers", type=int, default=1, help="async worker processes (SO_REUSEPORT)")
    parser.add_argument("--max-children", type=int, default=256, help="fork: children at once; thread: pool size")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a service option; VALUE is read as JSON when it parses, else as text")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument("--no-connection-log", action="store_true")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain")


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from inetkit.config.schema import DaemonConfig, Limits, ServiceConfig
    from inetkit.errors import ConfigError
    from inetkit.logs import setup_logging
    from inetkit.services.registry import load_service_class
    from inetkit.supervisor import BoundService, Supervisor, serve_forever

    setup_logging(args.log_format)
    try:
        cls = load_service_class(args.service, "service")
        model = args.model or cls.default_model_for(args.proto)
        service = ServiceConfig(
            name=args.service, port=args.port, proto=args.proto, model=model, bind=args.bind,
            handler=args.service, options=_options(args.option), workers=args.workers,
            max_children=args.max_children, limits=Limits(idle_timeout=args.idle_timeout or None),
            source="command line",
        )
        supervisor = Supervisor(DaemonConfig(services=(service,), source="command line"),
                                strict=True, connection_log=not args.no_connection_log)
        supervisor.bind_all()
    except (ConfigError, ValueError) as exc:
        return fail(str(exc), EXIT_CONFIG)
    except Exception as exc:  # BindError
        return fail(str(exc), EXIT_UNAVAILABLE)

    def on_ready(bound: list[BoundService]) -> None:
        b = bound[0]
        host, port = b.address
        print(f"{b.config.name} {b.config.proto} {host} {port} {b.config.model}", flush=True)

    return serve_forever(supervisor, on_ready)
