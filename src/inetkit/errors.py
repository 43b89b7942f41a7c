"""The exception vocabulary shared by every layer.

Two families, as in h11: the peer misbehaved (``RemoteProtocolError``) or the
caller misused an API (``LocalProtocolError``).  Configuration problems carry
the place they came from so that the operator can fix them without guessing.
"""

from __future__ import annotations


class InetkitError(Exception):
    """Base of every error inetkit raises on purpose."""


class ConfigError(InetkitError):
    """A configuration is invalid.  ``where`` is ``file:line`` or ``file: key``."""

    def __init__(self, problem: str, where: str | None = None) -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


class ProtocolError(InetkitError):
    """Something went wrong in a protocol exchange."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    ``code`` is an optional protocol-specific hint for the reply (a TFTP error
    code, a file-transfer status code...).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """Our own code used a protocol core in a way it does not allow."""
