"""One module per scenario, each with ``NAME`` and ``run(ctx)``, listed in
priority order (the order they run in)."""

from __future__ import annotations

import importlib
from types import ModuleType

ORDER = ["models", "echo", "connrate", "startup", "idle", "tftp", "files", "chat"]


def load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.scenarios.{name}")


class NotAvailable(RuntimeError):
    """The thing to measure is not there (a service not built yet); the
    scenario is reported as not measured, with this reason."""


def service_available(handler: str) -> bool:
    """True when the built-in service ``handler`` imports in this build."""
    from inetkit.errors import ConfigError
    from inetkit.services.registry import load_service_class

    try:
        load_service_class(handler)
    except ConfigError:
        return False
    return True
