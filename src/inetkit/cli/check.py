"""``inetkit check``: validate a config without binding anything."""

from __future__ import annotations

import argparse

from inetkit.cli.common import EXIT_CONFIG, fail, service_table
from inetkit.cli.configsource import add_config_arguments, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Exit status 0 when the config is valid, 78 (EX_CONFIG) with file:line and the problem otherwise."
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from inetkit.config.validate import validate_config
    from inetkit.errors import ConfigError

    try:
        config = load_config(args)
        validate_config(config)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    rows = [
        {"name": s.name, "proto": s.proto, "address": s.bind, "port": s.port,
         "model": s.model + (f" x{s.workers}" if s.workers > 1 else "")}
        for s in config.services
    ]
    print(f"{config.source}: {len(rows)} services, valid")
    print(service_table(rows))
    return 0
