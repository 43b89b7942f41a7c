"""Declarative, strict parsing of a service's ``[services.NAME.options]`` table.

A service lists its options once (``OPTIONS = {"message": Option(str, "hi")}``);
unknown keys and wrong types become a ConfigError naming the key, so a typo
in a config never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from inetkit.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One option: its type, its default and an optional check.

    ``check`` returns an error message (str) for a bad value, or None.
    """

    kind: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    check: Callable[[Any], str | None] | None = None


class ParsedOptions:
    """Attribute access to validated options (``opts.message``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = MappingProxyType(dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"ParsedOptions({dict(self._values)!r})"


def parse_options(spec: Mapping[str, Option], raw: Mapping[str, Any], where: str = "options") -> ParsedOptions:
    values: dict[str, Any] = {}
    for key in raw:
        if key not in spec:
            known = ", ".join(sorted(spec)) or "none"
            raise ConfigError(f"unknown option {key!r} (known: {known})", where)
    for key, option in spec.items():
        if key not in raw:
            values[key] = option.default
            continue
        value = raw[key]
        kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"option {key!r} must be {_names(kinds)}, not {value!r}", where)
        if not isinstance(value, kinds):
            raise ConfigError(f"option {key!r} must be {_names(kinds)}, not {value!r}", where)
        if option.check is not None:
            problem = option.check(value)
            if problem:
                raise ConfigError(f"option {key!r}: {problem}", where)
        values[key] = value
    return ParsedOptions(values)


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"
