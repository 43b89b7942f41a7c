"""Built-in service names mapped to ``module:Class``, imported only when used.

Keeping the table as strings lets ``inetkit --help`` and ``inetkit check`` start
without importing every service (and their dependencies).
"""

from __future__ import annotations

import importlib

from inetkit.errors import ConfigError
from inetkit.services.base import Service

BUILTIN: dict[str, str] = {
    # inetd internal services (RFC 862, 863, 864, 867, 868)
    "echo": "inetkit.services.internal:EchoService",
    "discard": "inetkit.services.internal:DiscardService",
    "chargen": "inetkit.services.internal:ChargenService",
    "daytime": "inetkit.services.internal:DaytimeService",
    "time": "inetkit.services.internal:TimeService",
    # the chapter's own programs
    "greeting": "inetkit.services.greeting:GreetingService",
    "udp-hello": "inetkit.services.hello:UdpHelloService",
    "hello": "inetkit.services.hello:HelloService",
    "file-push": "inetkit.services.file_push:FilePushService",
    "udp-file": "inetkit.services.udp_file:UdpFileService",
    "chat": "inetkit.services.chat:ChatService",
    # beyond the seeds
    "files": "inetkit.services.files:FilesService",
    "tftp": "inetkit.services.tftp:TftpService",
}


def load_service_class(name: str, where: str = "handler") -> type[Service]:
    """The Service subclass registered as ``name``; ConfigError if unknown."""
    target = BUILTIN.get(name)
    if target is None and ":" in name:
        # "package.module:Class" names a service outside the registry (used by
        # bench/ for its bench-only handlers); it must still be a Service.
        target = name
    if target is None:
        raise ConfigError(
            f"unknown service {name!r} (built-in: {', '.join(sorted(BUILTIN))}; "
            "or give 'program' with an exec model)",
            where,
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"service {name!r} is not available in this build: {exc}", where) from None
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise ConfigError(f"handler {name!r} is not a Service class", where)
    return cls


def default_model(name: str, proto: str, where: str = "handler") -> str:
    return load_service_class(name, where).default_model_for(proto)


def create_service(name: str, options: dict | None = None, where: str = "options") -> Service:
    return load_service_class(name, where)(options or {}, where)
