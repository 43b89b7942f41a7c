"""TFTP option negotiation (RFC 2347, 2348, 2349, 7440).

The server side (``negotiate``) turns the options of a request into the
OACK to send and the ``Settings`` the transfer runs with:

- ``blksize`` (RFC 2348): 8..65464; a larger request is clamped to the
  server's ``max_blksize``; a smaller or non-numeric one is ignored (left
  out of the OACK, so the transfer runs at 512).
- ``timeout`` (RFC 2349): 1..255 whole seconds; accepted as is (the RFC
  lets a server only accept or ignore it); anything else is ignored.
- ``tsize`` (RFC 2349): in an RRQ the server answers with the size it will
  send (left out for an empty file: curl rejects ``tsize 0``); in a WRQ the client announces its size, which the server checks
  against its limit (``TsizeTooLarge``) and echoes.
- ``windowsize`` (RFC 7440): 1..65535, clamped to ``max_windowsize``.
- Unknown options are ignored (RFC 2347 section 4).

The client side (``accept_oack``) checks that an OACK only narrows what we
asked for: an option we did not request, a larger blksize/windowsize or a
different timeout makes the OACK invalid (the client then sends ERROR 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from inetkit.errors import RemoteProtocolError
from inetkit.proto.tftp.packets import ERR_DISK_FULL, ERR_OPTIONS, MAX_BLKSIZE

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_WINDOWSIZE = 65535
DEFAULT_TIMEOUT = 1.0
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255


@dataclass(frozen=True)
class Settings:
    """What one transfer runs with once negotiation is over."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    #: the initial retransmission timeout in seconds
    timeout: float = DEFAULT_TIMEOUT
    #: the transfer size announced by the peer or by us, when known
    tsize: int | None = None


@dataclass(frozen=True)
class Limits:
    """The server's ceilings for negotiated values."""

    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = 64
    default_timeout: float = DEFAULT_TIMEOUT
    #: largest upload accepted (bytes); None means no limit
    max_size: int | None = None


class TsizeTooLarge(RemoteProtocolError):
    """A WRQ announced more bytes than the server accepts (reply ERROR 3)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"file of {size} bytes exceeds the limit of {limit} bytes", ERR_DISK_FULL)


def _int(text: str) -> int | None:
    text = text.strip()
    # isascii(): str.isdigit() is also true for "²" or "١", which int() refuses
    # 20 digits: any 64-bit size (a 1 TB file has 13; the server must accept what it sends)
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    return int(text)


def negotiate(
    options: dict[str, str], limits: Limits, *, is_read: bool, file_size: int | None = None
) -> tuple[dict[str, str], Settings]:
    """Server side: (OACK options, settings).  An empty OACK dict means no
    OACK is sent and the transfer starts as in RFC 1350.

    ``file_size`` is the number of bytes the transfer will carry on the
    wire (for netascii, the encoded size), used to answer ``tsize`` in RRQ.
    """
    oack: dict[str, str] = {}
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, limits.default_timeout, None
    for name, value in options.items():
        if name == "blksize":
            n = _int(value)
            if n is None or n < MIN_BLKSIZE:
                continue
            blksize = min(n, MAX_BLKSIZE, max(MIN_BLKSIZE, limits.max_blksize))
            oack[name] = str(blksize)
        elif name == "windowsize":
            n = _int(value)
            if n is None or not 1 <= n <= MAX_WINDOWSIZE:
                continue
            windowsize = min(n, max(1, limits.max_windowsize))
            oack[name] = str(windowsize)
        elif name == "timeout":
            n = _int(value)
            if n is None or not MIN_TIMEOUT <= n <= MAX_TIMEOUT:
                continue
            timeout = float(n)
            oack[name] = str(n)
        elif name == "tsize":
            n = _int(value)
            if n is None:
                continue
            if is_read:
                # no size to tell; and curl (7.88) rejects "tsize 0" in an OACK as
                # invalid, so an empty file is sent without a tsize answer
                if not file_size:
                    continue
                tsize = file_size
            else:
                if limits.max_size is not None and n > limits.max_size:
                    raise TsizeTooLarge(n, limits.max_size)
                tsize = n
            oack[name] = str(tsize)
        # RFC 2347: options the server does not support are ignored
    return oack, Settings(blksize, windowsize, timeout, tsize)


def request_options(
    *, blksize: int | None = None, windowsize: int | None = None, timeout: int | None = None, tsize: int | None = None
) -> dict[str, str]:
    """Client side: the options of an RRQ/WRQ (only those that differ from RFC 1350)."""
    options: dict[str, str] = {}
    if blksize is not None and blksize != DEFAULT_BLKSIZE:
        if not MIN_BLKSIZE <= blksize <= MAX_BLKSIZE:
            raise ValueError(f"blksize must be {MIN_BLKSIZE}..{MAX_BLKSIZE}, not {blksize}")
        options["blksize"] = str(blksize)
    if windowsize is not None and windowsize != 1:
        if not 1 <= windowsize <= MAX_WINDOWSIZE:
            raise ValueError(f"windowsize must be 1..{MAX_WINDOWSIZE}, not {windowsize}")
        options["windowsize"] = str(windowsize)
    if timeout is not None:
        if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be {MIN_TIMEOUT}..{MAX_TIMEOUT} seconds, not {timeout}")
        options["timeout"] = str(timeout)
    if tsize is not None:
        options["tsize"] = str(tsize)
    return options


def accept_oack(requested: dict[str, str], oack: dict[str, str], *, default_timeout: float = DEFAULT_TIMEOUT) -> Settings:
    """Client side: the settings an OACK grants, or RemoteProtocolError (code 8)."""
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, default_timeout, None
    for name, value in oack.items():
        if name not in requested:
            raise RemoteProtocolError(f"server acknowledged option {name!r} that was not requested", ERR_OPTIONS)
        n = _int(value)
        if n is None:
            raise RemoteProtocolError(f"server sent a non-numeric {name} {value!r}", ERR_OPTIONS)
        asked = _int(requested[name])
        if name == "blksize":
            if not MIN_BLKSIZE <= n <= (asked or MAX_BLKSIZE):
                raise RemoteProtocolError(f"server sent blksize {n}, outside {MIN_BLKSIZE}..{asked}", ERR_OPTIONS)
            blksize = n
        elif name == "windowsize":
            if not 1 <= n <= (asked or MAX_WINDOWSIZE):
                raise RemoteProtocolError(f"server sent windowsize {n}, outside 1..{asked}", ERR_OPTIONS)
            windowsize = n
        elif name == "timeout":
            if n != asked:
                raise RemoteProtocolError(f"server changed timeout {asked} to {n}", ERR_OPTIONS)
            timeout = float(n)
        elif name == "tsize":
            tsize = n
    return Settings(blksize, windowsize, timeout, tsize)
