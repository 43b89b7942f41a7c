"""Choose the config from command-line options (shared by serve and check)."""

from __future__ import annotations

import argparse

from inetkit.config.schema import DaemonConfig


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-c", "--config", metavar="FILE", help="a TOML config (default: the embedded default config)")
    group.add_argument("--inetd-conf", metavar="FILE", help="a classic inetd.conf to run unchanged")
    parser.add_argument("--bind", metavar="ADDR", help="bind every service to ADDR (e.g. 0.0.0.0, or :: for dual-stack)")
    parser.add_argument("--any-port", action="store_true",
                        help="bind every service to a port the OS chooses (for tests and demos; the ready table shows them)")


def load_config(args: argparse.Namespace) -> DaemonConfig:
    from inetkit.config.inetd_conf import load_inetd_conf
    from inetkit.config.toml import load_default, load_toml

    if args.inetd_conf:
        config = load_inetd_conf(args.inetd_conf, default_bind=args.bind)
    elif args.config:
        config = load_toml(args.config)
    else:
        config = load_default()
    if args.bind:
        config = config.with_bind(args.bind)
    if getattr(args, "any_port", False):
        config = config.with_any_port()
    return config
