"""Semantic checks that need more than the config text itself.

``validate_config`` instantiates every service's handler with its options and
checks the model against what that handler allows, so that a config which
passes ``inetkit check`` cannot fail half-way through ``inetkit serve``.
"""

from __future__ import annotations

import ipaddress

from inetkit.config.schema import EXEC_MODELS, DaemonConfig, Limits, ServiceConfig
from inetkit.errors import ConfigError


def check_networks(limits: Limits, where: str) -> None:
    """Every allow/deny entry must be an IPv4 or IPv6 address or CIDR network."""
    for entry in (*limits.allow, *limits.deny):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{entry!r} is not an IP address or CIDR network", where) from None


def validate_service(service: ServiceConfig) -> None:
    """Raise ConfigError (with the service's source) if it cannot run as written."""
    where = service.source
    if service.model in EXEC_MODELS:
        if not service.program:
            raise ConfigError(f"model {service.model!r} needs 'program' (the argv to run)", where)
        if service.model == "exec-fd" and not any("{fd}" in a for a in service.program):
            raise ConfigError("model 'exec-fd' needs '{fd}' in program to pass the descriptor number", where)
        return
    if service.program:
        raise ConfigError(f"'program' is only used by the exec models, not {service.model!r}", where)
    from inetkit.services.registry import load_service_class

    cls = load_service_class(service.handler or service.name, where)
    if service.proto not in cls.transports:
        raise ConfigError(f"service {cls.name!r} does not speak {service.proto}", where)
    allowed = cls.models_for(service.proto)
    if service.model not in allowed:
        raise ConfigError(
            f"service {cls.name!r} does not run under model {service.model!r} over {service.proto}"
            f" (allowed: {', '.join(sorted(allowed))})"
            + ("; it keeps shared in-memory state, which separate processes or threads would split or race"
               if cls.shared_state else ""),
            where,
        )
    cls.parse_options(service.options, where)


def validate_config(config: DaemonConfig) -> None:
    """Check every service, and that no two services claim the same address."""
    seen: dict[tuple[str, int, str], str] = {}
    for service in config.services:
        validate_service(service)
        if service.port:
            key = (service.bind, service.port, service.proto)
            if key in seen:
                raise ConfigError(
                    f"{service.proto} port {service.port} on {service.bind} is already used by {seen[key]}",
                    service.source,
                )
            seen[key] = service.name
