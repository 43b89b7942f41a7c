"""Reads classic inetd.conf lines, so an existing /etc/inetd.conf runs unchanged.

Line shape (netkit/OpenBSD/FreeBSD inetd)::

    [addr:]service  socket-type  proto  wait|nowait[.max]  user[.group|:group]  program  argv...

- ``service`` is an /etc/services name, or (an inetkit extension, handy for tests
  and unprivileged runs) a port number, 0 meaning "let the OS choose".
- ``addr:`` binds one address; a line made of ``addr:`` alone sets the default
  address for the lines below it (OpenBSD), ``*:`` resets it.
- ``proto`` is tcp/udp, tcp4/udp4 (IPv4 only) or tcp6/udp6 (IPv6, bound to ``::``
  unless an address is given).
- ``nowait.max`` (netkit) and FreeBSD's ``nowait/max-child/per-minute/per-ip``
  become limits: max concurrent connections, per-source rate per minute and max
  per source.
- ``program`` is ``internal`` for the built-in echo, discard, chargen, daytime
  and time services, otherwise an absolute path run without a shell.

Without an explicit address inetkit binds 127.0.0.1 (safe default) unless the
caller passes ``default_bind`` (the ``--bind`` option).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from inetkit.config.schema import DaemonConfig, Limits, ServiceConfig
from inetkit.config.toml import resolve_port
from inetkit.errors import ConfigError

INTERNAL = {"echo", "discard", "chargen", "daytime", "time"}


def _split_wait(field: str, where: str) -> tuple[bool, Limits]:
    head, sep, rest = field.partition(".")
    parts = [head]
    if not sep and "/" in field:
        parts = field.split("/")
        head, rest = parts[0], ""
    if head not in ("wait", "nowait"):
        raise ConfigError(f"expected 'wait' or 'nowait', got {field!r}", where)
    numbers: list[int] = []
    for text in ([rest] if sep else parts[1:]):
        if not text.isdigit():
            raise ConfigError(f"bad limit {text!r} in {field!r} (expected a number)", where)
        numbers.append(int(text))
    limits = Limits()
    if numbers:
        limits = Limits(
            max_connections=numbers[0] or None,
            rate_per_source=(numbers[1] / 60.0) if len(numbers) > 1 and numbers[1] else None,
            max_per_source=numbers[2] if len(numbers) > 2 and numbers[2] else None,
        )
    return head == "wait", limits


def _split_user(field: str) -> tuple[str, str | None]:
    for sep in (":", "."):
        if sep in field:
            user, group = field.split(sep, 1)
            return user, group or None
    return field, None


def parse_inetd_conf(text: str, filename: str = "<inetd.conf>", default_bind: str | None = None) -> DaemonConfig:
    """Turn inetd.conf text into a DaemonConfig; errors name ``file:line``."""
    services: list[ServiceConfig] = []
    section_bind: str | None = None
    names: dict[str, int] = {}
    logical: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if raw[:1] in (" ", "\t") and logical:
            # netkit allows continuing a line with leading whitespace
            first, previous = logical[-1]
            logical[-1] = (first, previous + " " + line.strip())
            continue
        logical.append((number, line.strip()))
    for number, line in logical:
        where = f"{filename}:{number}"
        if line.endswith(":") and len(line.split()) == 1:
            section_bind = None if line == "*:" else line[:-1].strip("[]")
            continue
        try:
            fields = shlex.split(line, posix=True)
        except ValueError as exc:
            raise ConfigError(f"cannot split line: {exc}", where) from None
        if len(fields) < 6:
            raise ConfigError(
                "expected: service socket-type proto wait|nowait user program [argv...]", where
            )
        service_field, socktype, proto_field, wait_field, user_field, program = fields[:6]
        argv = fields[6:]
        bind = section_bind or default_bind
        if ":" in service_field and not service_field.startswith("["):
            addr, service_name = service_field.rsplit(":", 1)
            bind = None if addr == "*" else addr
        elif service_field.startswith("["):
            addr, _, service_name = service_field[1:].partition("]:")
            bind = addr
        else:
            service_name = service_field
        proto = proto_field.rstrip("46")
        family = proto_field[len(proto):]
        if proto not in ("tcp", "udp") or family not in ("", "4", "6", "46"):
            raise ConfigError(f"unsupported protocol {proto_field!r} (use tcp, udp, tcp4, udp6, ...)", where)
        expected_type = "stream" if proto == "tcp" else "dgram"
        if socktype != expected_type:
            raise ConfigError(f"socket type {socktype!r} does not go with {proto_field!r} (expected {expected_type!r})", where)
        if bind is None:
            bind = "::" if family in ("6", "46") else "127.0.0.1"
        bind = bind.strip("[]")
        wait, limits = _split_wait(wait_field, where)
        user, group = _split_user(user_field)
        port = resolve_port(service_name, proto, where)
        name = service_name if not service_name.isdigit() else f"port{service_name}"
        count = names.get(f"{name}/{proto}", 0)
        names[f"{name}/{proto}"] = count + 1
        if count:
            name = f"{name}-{count + 1}"
        if program == "internal":
            if service_name not in INTERNAL:
                raise ConfigError(
                    f"no internal service {service_name!r} (internal: {', '.join(sorted(INTERNAL))})", where
                )
            services.append(
                ServiceConfig(
                    name=name, port=port, proto=proto,  # type: ignore[arg-type]
                    model="async" if proto == "tcp" else "datagram",
                    bind=bind, handler=service_name, limits=limits, source=where,
                )
            )
            continue
        if not program.startswith("/"):
            raise ConfigError(f"program {program!r} must be an absolute path or 'internal'", where)
        if proto == "tcp" and wait:
            raise ConfigError(
                "tcp 'wait' services (the program accepts on the listening socket) are not supported; use nowait",
                where,
            )
        if proto == "udp" and not wait:
            raise ConfigError("udp services must be 'wait' (the program owns the socket until it exits)", where)
        # argv[0] is given separately in inetd.conf; keep the real program path to execute
        program_argv = (program, *argv[1:]) if argv else (program,)
        services.append(
            ServiceConfig(
                name=name, port=port, proto=proto,  # type: ignore[arg-type]
                model="wait" if proto == "udp" else "exec",
                bind=bind, program=program_argv, limits=limits,
                user=None if user == "root" else user, group=group, source=where,
                options={"argv0": argv[0]} if argv else {},
            )
        )
    return DaemonConfig(services=tuple(services), source=filename)


def load_inetd_conf(path: str | Path, default_bind: str | None = None) -> DaemonConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read inetd.conf: {exc}", str(path)) from None
    return parse_inetd_conf(text, str(path), default_bind)
