"""The native TOML configuration format.

Example::

    [daemon]
    bind = "127.0.0.1"        # default bind address of every service
    log_format = "plain"      # or "json"
    grace = 10                # seconds SIGTERM gives in-flight connections

    [services.greeting]
    port = 9001               # a number or an /etc/services name
    proto = "tcp"             # "tcp", "udp" or ["tcp", "udp"]
    model = "iterative"       # default: the handler's own default
    handler = "greeting"      # default: the section name
    [services.greeting.options]
    message = "welcome to network server!!!"
    [services.greeting.limits]
    max_connections = 100

    [services.han]
    port = 9003
    model = "exec"
    program = ["{python}", "-m", "inetkit.examples.han"]

``tomllib`` reports syntax errors with a line number but keeps no positions for
values, so semantic errors are located by finding the key under its section
header in the text (``_Locator``).
"""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path
from typing import Any

from inetkit.config.schema import (
    TCP_MODELS,
    UDP_MODELS,
    DaemonConfig,
    Limits,
    ServiceConfig,
)
from inetkit.errors import ConfigError

_SERVICE_KEYS = {
    "port", "proto", "model", "handler", "program", "bind", "options", "limits",
    "user", "group", "workers", "max_children", "backlog",
}
_DAEMON_KEYS = {"bind", "log_format", "grace", "control_socket"}
_LIMIT_FIELDS = {f for f in Limits.__dataclass_fields__}


class _Locator:
    """Finds the line of a section or a key in TOML text, for error messages."""

    def __init__(self, text: str, filename: str) -> None:
        self.lines = text.splitlines()
        self.filename = filename

    def where(self, section: str, key: str | None = None) -> str:
        header = re.compile(r"^\s*\[\s*" + re.escape(section).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
        start = None
        for number, line in enumerate(self.lines, 1):
            if header.match(line):
                start = number
                break
        if start is None:
            return f"{self.filename}: [{section}]" + (f" {key}" if key else "")
        if key is None:
            return f"{self.filename}:{start}"
        pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for number in range(start, len(self.lines)):
            line = self.lines[number]
            if line.lstrip().startswith("["):
                break
            if pattern.match(line):
                return f"{self.filename}:{number + 1}"
        return f"{self.filename}:{start}"


def resolve_port(value: Any, proto: str, where: str) -> int:
    """A port number, or an /etc/services name looked up for ``proto``."""
    if isinstance(value, bool):
        raise ConfigError(f"port must be a number or a service name, not {value!r}", where)
    if isinstance(value, int):
        if not 0 <= value <= 65535:
            raise ConfigError(f"port {value} is out of range 0..65535", where)
        return value
    if isinstance(value, str):
        if value.isdigit():
            return resolve_port(int(value), proto, where)
        try:
            return socket.getservbyname(value, proto)
        except OSError:
            raise ConfigError(f"unknown service name {value!r} for {proto} (not in /etc/services)", where) from None
    raise ConfigError(f"port must be a number or a service name, not {value!r}", where)


def _expect(value: Any, kind: type | tuple[type, ...], what: str, where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{what} must be a number, not {value!r}", where)
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{what} must be {names}, not {value!r}", where)
    return value


def _limits(raw: Any, loc: _Locator, section: str) -> Limits:
    where = loc.where(section + ".limits")
    _expect(raw, dict, "limits", where)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kwhere = loc.where(section + ".limits", key)
        if key not in _LIMIT_FIELDS:
            raise ConfigError(f"unknown limit {key!r} (known: {', '.join(sorted(_LIMIT_FIELDS))})", kwhere)
        if key in ("allow", "deny"):
            if isinstance(value, str):
                value = [value]
            _expect(value, list, key, kwhere)
            values[key] = tuple(_expect(v, str, f"{key} entry", kwhere) for v in value)
        else:
            _expect(value, (int, float), key, kwhere)
            if value < 0:
                raise ConfigError(f"{key} must not be negative", kwhere)
            values[key] = value
    limits = Limits(**values)
    from inetkit.config.validate import check_networks

    check_networks(limits, where)
    return limits


def _service(name: str, raw: Any, default_bind: str, loc: _Locator) -> list[ServiceConfig]:
    section = f"services.{name}"
    where = loc.where(section)
    _expect(raw, dict, f"[{section}]", where)
    for key in raw:
        if key not in _SERVICE_KEYS:
            raise ConfigError(f"unknown key {key!r} (known: {', '.join(sorted(_SERVICE_KEYS))})", loc.where(section, key))
    if "port" not in raw:
        raise ConfigError("missing 'port'", where)
    protos = raw.get("proto", "tcp")
    if isinstance(protos, str):
        protos = [protos]
    _expect(protos, list, "proto", loc.where(section, "proto"))
    if not protos or any(p not in ("tcp", "udp") for p in protos) or len(set(protos)) != len(protos):
        raise ConfigError(f"proto must be 'tcp', 'udp' or ['tcp', 'udp'], not {raw.get('proto')!r}", loc.where(section, "proto"))
    program = raw.get("program", [])
    if isinstance(program, str):
        raise ConfigError("program must be a list of arguments (it is never run through a shell)", loc.where(section, "program"))
    _expect(program, list, "program", loc.where(section, "program"))
    for arg in program:
        _expect(arg, str, "program argument", loc.where(section, "program"))
    handler = raw.get("handler")
    if handler is not None:
        _expect(handler, str, "handler", loc.where(section, "handler"))
    if program and handler:
        raise ConfigError("give either 'handler' (a built-in service) or 'program' (exec models), not both", where)
    if not program and handler is None:
        handler = name
    options = _expect(raw.get("options", {}), dict, "options", loc.where(section + ".options"))
    limits = _limits(raw.get("limits", {}), loc, section)
    out = []
    for proto in protos:
        model = raw.get("model")
        if model is None:
            if program:
                model = "exec" if proto == "tcp" else "wait"
            else:
                from inetkit.services.registry import default_model

                model = default_model(handler, proto, loc.where(section, "handler") if "handler" in raw else where)
        _expect(model, str, "model", loc.where(section, "model"))
        allowed = TCP_MODELS if proto == "tcp" else UDP_MODELS
        if model not in allowed:
            raise ConfigError(
                f"model {model!r} is not a {proto} model (choose from {', '.join(sorted(allowed))})",
                loc.where(section, "model"),
            )
        ints = {}
        for key, default in (("workers", 1), ("max_children", 256), ("backlog", 1024)):
            value = raw.get(key, default)
            _expect(value, int, key, loc.where(section, key))
            if value < 1:
                raise ConfigError(f"{key} must be at least 1", loc.where(section, key))
            ints[key] = value
        if ints["workers"] > 1 and model != "async":
            raise ConfigError("workers > 1 needs model 'async'", loc.where(section, "workers"))
        for key in ("user", "group", "bind"):
            if key in raw:
                _expect(raw[key], str, key, loc.where(section, key))
        out.append(
            ServiceConfig(
                name=name,
                port=resolve_port(raw["port"], proto, loc.where(section, "port")),
                proto=proto,
                model=model,
                bind=raw.get("bind", default_bind),
                handler=handler,
                program=tuple(program),
                options=dict(options),
                limits=limits,
                user=raw.get("user"),
                group=raw.get("group"),
                source=where,
                **ints,
            )
        )
    return out


def parse_toml(text: str, filename: str = "<config>") -> DaemonConfig:
    """Parse and structurally validate a TOML config (see module docstring)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", filename) from None
    loc = _Locator(text, filename)
    for key in data:
        if key not in ("daemon", "services"):
            raise ConfigError(f"unknown table [{key}] (expected [daemon] and [services.NAME])", loc.where(key))
    daemon = _expect(data.get("daemon", {}), dict, "[daemon]", loc.where("daemon"))
    for key in daemon:
        if key not in _DAEMON_KEYS:
            raise ConfigError(f"unknown key {key!r} in [daemon] (known: {', '.join(sorted(_DAEMON_KEYS))})", loc.where("daemon", key))
    default_bind = _expect(daemon.get("bind", "127.0.0.1"), str, "bind", loc.where("daemon", "bind"))
    log_format = daemon.get("log_format", "plain")
    if log_format not in ("plain", "json"):
        raise ConfigError("log_format must be 'plain' or 'json'", loc.where("daemon", "log_format"))
    grace = _expect(daemon.get("grace", 10.0), (int, float), "grace", loc.where("daemon", "grace"))
    control = daemon.get("control_socket")
    if control is not None:
        _expect(control, str, "control_socket", loc.where("daemon", "control_socket"))
    services_raw = _expect(data.get("services", {}), dict, "[services]", loc.where("services"))
    services: list[ServiceConfig] = []
    for name, raw in services_raw.items():
        services.extend(_service(name, raw, default_bind, loc))
    return DaemonConfig(
        services=tuple(services),
        source=filename,
        control_socket=control,
        log_format=log_format,
        grace=float(grace),
    )


def load_toml(path: str | Path) -> DaemonConfig:
    """Read a TOML config file; unreadable files are a ConfigError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", str(path)) from None
    return parse_toml(text, str(path))


def load_default() -> DaemonConfig:
    """The embedded default config (``default.toml`` inside the package)."""
    from importlib.resources import files

    text = files("inetkit.config").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_toml(text, "<default config>")
