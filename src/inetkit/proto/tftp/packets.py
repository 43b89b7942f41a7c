"""TFTP packet codec (RFC 1350 section 5, RFC 2347 section 2).

Every packet starts with a 2-byte big-endian opcode:

====  ======  =====================================================
  1   RRQ     filename NUL mode NUL [option NUL value NUL]...
  2   WRQ     same as RRQ
  3   DATA    block(2) payload(0..blksize)
  4   ACK     block(2)
  5   ERROR   code(2) message NUL
  6   OACK    [option NUL value NUL]...   (RFC 2347)
====  ======  =====================================================

``decode`` is strict: anything malformed raises ``RemoteProtocolError`` whose
``code`` is the TFTP error code a reply should carry (4, illegal operation,
for framing problems; 8, option negotiation refused, for broken options).
It never raises anything else, whatever the bytes (property-tested).

Text fields (filenames, modes, options, messages) are decoded as UTF-8 with
``surrogateescape`` so that any byte string round-trips through ``str``.
Option names and the mode are case-insensitive (RFC 2347) and returned in
lower case.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from inetkit.errors import LocalProtocolError, RemoteProtocolError

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
OPCODE_NAMES = {RRQ: "RRQ", WRQ: "WRQ", DATA: "DATA", ACK: "ACK", ERROR: "ERROR", OACK: "OACK"}

#: error codes (RFC 1350 appendix; 8 from RFC 2347)
ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL = 4
ERR_UNKNOWN_TID = 5
ERR_EXISTS = 6
ERR_NO_USER = 7
ERR_OPTIONS = 8

ERROR_NAMES = {
    ERR_UNDEFINED: "not defined",
    ERR_NOT_FOUND: "file not found",
    ERR_ACCESS: "access violation",
    ERR_DISK_FULL: "disk full or allocation exceeded",
    ERR_ILLEGAL: "illegal TFTP operation",
    ERR_UNKNOWN_TID: "unknown transfer ID",
    ERR_EXISTS: "file already exists",
    ERR_NO_USER: "no such user",
    ERR_OPTIONS: "option negotiation refused",
}

MODES = ("netascii", "octet", "mail")
#: largest DATA payload any option can ask for (RFC 2348: 65464 = 65535 - 20 - 8 - 4 - 3)
MAX_BLKSIZE = 65464
#: largest datagram a peer could legitimately send us
MAX_PACKET = MAX_BLKSIZE + 4

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")

_ENC = "utf-8"
_ERRS = "surrogateescape"


@dataclass(frozen=True)
class Request:
    """RRQ (``opcode == RRQ``) or WRQ.  ``options`` keeps the peer's order."""

    opcode: int
    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str = ""


@dataclass(frozen=True)
class OAck:
    options: dict[str, str] = field(default_factory=dict)


Packet = Request | Data | Ack | Error | OAck


# -- encoding ----------------------------------------------------------------------------

def _text(value: str, what: str) -> bytes:
    raw = value.encode(_ENC, _ERRS)
    if b"\0" in raw:
        raise LocalProtocolError(f"TFTP {what} may not contain NUL: {value!r}")
    return raw + b"\0"


def _options_bytes(options: dict[str, str]) -> bytes:
    return b"".join(_text(k, "option name") + _text(str(v), "option value") for k, v in options.items())


def encode_request(opcode: int, filename: str, mode: str = "octet", options: dict[str, str] | None = None) -> bytes:
    if opcode not in (RRQ, WRQ):
        raise LocalProtocolError(f"not a request opcode: {opcode}")
    if not filename:
        raise LocalProtocolError("TFTP filename must not be empty")
    return _H.pack(opcode) + _text(filename, "filename") + _text(mode, "mode") + _options_bytes(options or {})


def encode_data(block: int, payload: bytes) -> bytes:
    """DATA; ``block`` is taken modulo 65536 (block numbers wrap, see session)."""
    return _HH.pack(DATA, block & 0xFFFF) + payload


def encode_ack(block: int) -> bytes:
    return _HH.pack(ACK, block & 0xFFFF)


def encode_error(code: int, message: str = "") -> bytes:
    if not 0 <= code <= 0xFFFF:
        raise LocalProtocolError(f"TFTP error code out of range: {code}")
    # a NUL inside the message would end it early on the wire: drop it
    return _HH.pack(ERROR, code) + message.replace("\0", "").encode(_ENC, _ERRS) + b"\0"


def encode_oack(options: dict[str, str]) -> bytes:
    return _H.pack(OACK) + _options_bytes(options)


def encode(packet: Packet) -> bytes:
    """Encode any packet object (the inverse of ``decode``)."""
    if isinstance(packet, Request):
        return encode_request(packet.opcode, packet.filename, packet.mode, packet.options)
    if isinstance(packet, Data):
        return encode_data(packet.block, packet.payload)
    if isinstance(packet, Ack):
        return encode_ack(packet.block)
    if isinstance(packet, Error):
        return encode_error(packet.code, packet.message)
    if isinstance(packet, OAck):
        return encode_oack(packet.options)
    raise LocalProtocolError(f"not a TFTP packet: {packet!r}")


# -- decoding ----------------------------------------------------------------------------

def _fields(body: bytes, what: str) -> list[str]:
    """NUL-terminated strings; the body must end with NUL (RFC 1350 figure 5-1)."""
    if not body.endswith(b"\0"):
        raise RemoteProtocolError(f"{what}: missing NUL terminator", ERR_ILLEGAL)
    return [part.decode(_ENC, _ERRS) for part in body[:-1].split(b"\0")]


def _options(parts: list[str], what: str) -> dict[str, str]:
    if len(parts) % 2:
        raise RemoteProtocolError(f"{what}: option {parts[-1]!r} has no value", ERR_OPTIONS)
    options: dict[str, str] = {}
    for i in range(0, len(parts), 2):
        name = parts[i].lower()
        if not name:
            raise RemoteProtocolError(f"{what}: empty option name", ERR_OPTIONS)
        if name in options:
            raise RemoteProtocolError(f"{what}: option {name!r} given twice", ERR_OPTIONS)
        options[name] = parts[i + 1]
    return options


def decode(datagram: bytes) -> Packet:
    """Parse one datagram.  Raises only ``RemoteProtocolError`` (with a code)."""
    if len(datagram) < 2:
        raise RemoteProtocolError(f"packet of {len(datagram)} byte(s) is too short", ERR_ILLEGAL)
    opcode = (datagram[0] << 8) | datagram[1]
    if opcode == DATA:
        if len(datagram) < 4:
            raise RemoteProtocolError("DATA packet without a block number", ERR_ILLEGAL)
        if len(datagram) > MAX_PACKET:
            raise RemoteProtocolError(f"DATA payload of {len(datagram) - 4} bytes exceeds {MAX_BLKSIZE}", ERR_ILLEGAL)
        return Data((datagram[2] << 8) | datagram[3], bytes(datagram[4:]))
    if opcode == ACK:
        if len(datagram) != 4:
            raise RemoteProtocolError(f"ACK packet of {len(datagram)} bytes (expected 4)", ERR_ILLEGAL)
        return Ack((datagram[2] << 8) | datagram[3])
    if opcode in (RRQ, WRQ):
        name = OPCODE_NAMES[opcode]
        parts = _fields(bytes(datagram[2:]), name)
        if len(parts) < 2:
            raise RemoteProtocolError(f"{name}: missing mode", ERR_ILLEGAL)
        filename, mode = parts[0], parts[1].lower()
        if not filename:
            raise RemoteProtocolError(f"{name}: empty filename", ERR_ILLEGAL)
        if mode not in MODES:
            raise RemoteProtocolError(f"{name}: unknown transfer mode {parts[1]!r}", ERR_ILLEGAL)
        return Request(opcode, filename, mode, _options(parts[2:], name))
    if opcode == ERROR:
        if len(datagram) < 4:
            raise RemoteProtocolError("ERROR packet without an error code", ERR_ILLEGAL)
        body = bytes(datagram[4:])
        # be liberal in what we accept here: a missing NUL still carries the message
        message = body.split(b"\0", 1)[0].decode(_ENC, "replace")
        return Error((datagram[2] << 8) | datagram[3], message)
    if opcode == OACK:
        body = bytes(datagram[2:])
        if not body:
            raise RemoteProtocolError("OACK without options", ERR_OPTIONS)
        return OAck(_options(_fields(body, "OACK"), "OACK"))
    raise RemoteProtocolError(f"unknown opcode {opcode}", ERR_ILLEGAL)


def describe_error(code: int, message: str) -> str:
    """Human wording of a received ERROR: '<code name>: <message>'."""
    name = ERROR_NAMES.get(code, f"error {code}")
    if message and message.lower() != name:
        return f"{name} (code {code}): {message}"
    return f"{name} (code {code})"
