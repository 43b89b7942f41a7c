"""inetkit's file-transfer protocol ("FX1"), sans-IO: headers and state machines.

The wire format is written down in ``docs/filexfer.md``.  In short, one
connection carries one request; every header is one LF-terminated ASCII line
of at most ``MAX_LINE`` bytes:

    client: FX1 LIST                      server: LIST <count>  + <count> lines "<size> <name>"
    client: FX1 GET <name> <offset>       server: FILE <size> <sha256>  + bytes [offset, size)
    client: FX1 GET <name> <offset> blake3
                                          server: FILE <size> <sha256> <blake3>  + bytes [offset, size)
    client: FX1 PUT <name> <size> <sha256>
                                          server: READY <offset>
    client: bytes [offset, size)          server: DONE <size> <sha256>
    any failure:                          server: ERR <code> <reason>
    before FILE or DONE, while hashing:   server: WAIT <done> <total>  (any number)

Names are UTF-8 paths relative to the server's root, percent-encoded
(RFC 3986 §2.1) so that a name never contains a space or a control byte.
Numbers are decimal without leading zeros, at most 2**63 - 1.  Digests are
SHA-256 (FIPS 180-4) as 64 lowercase hex digits; a GET may also ask for the
file's BLAKE3 (256-bit output, 64 lowercase hex digits), a hash about four
times cheaper to compute, which the client then verifies instead.

This module never touches a socket, a file or a clock.  File bodies do not
pass through it either (they go by ``sendfile``/``recv_into``): the I/O layer
reports how many body bytes moved with ``body_sent``/``body_received`` and the
core checks the counts against the headers.  Every malformed header raises
``FilexferError`` (a ``RemoteProtocolError`` carrying a protocol status code);
calling a method in the wrong state raises ``LocalProtocolError``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote

from inetkit.errors import LocalProtocolError, RemoteProtocolError

VERSION = b"FX1"
#: longest header line, LF included
MAX_LINE = 4096
#: longest name (decoded UTF-8 bytes), and deepest path
MAX_NAME = 1024
MAX_DEPTH = 32
#: largest number on the wire (sizes and offsets fit an off_t)
MAX_NUMBER = 2**63 - 1
#: longest reason text in an ERR line
MAX_REASON = 200
#: most entries one LIST reply may announce
MAX_ENTRIES = 100_000
#: most WAIT lines a client accepts in one exchange (one a second: a day)
MAX_WAITS = 86_400
#: the server's reserved directory for partial uploads; never a client name
RESERVED = ".inetkit-partial"
#: digests a GET may ask the client to verify with ("sha256" needs no request field)
CHECKS = ("sha256", "blake3")


class Status(enum.IntEnum):
    """ERR codes: three digits, chosen to read like their HTTP namesakes."""

    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    TIMEOUT = 408
    CONFLICT = 409
    TOO_LARGE = 413
    BAD_OFFSET = 416
    DIGEST_MISMATCH = 422
    LOCKED = 423
    INTERNAL = 500
    INSUFFICIENT_STORAGE = 507


class FilexferError(RemoteProtocolError):
    """A protocol failure with its status code: a malformed header we parsed,
    or an ``ERR`` line the peer sent (``remote`` is then true)."""

    def __init__(self, code: int, reason: str, *, remote: bool = False) -> None:
        self.reason = reason
        self.remote = remote
        super().__init__(f"{code} {reason}", code)

    @property
    def status(self) -> int:
        return int(self.code or 0)


# -- requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class ListRequest:
    def encode(self) -> bytes:
        return VERSION + b" LIST\n"


@dataclass(frozen=True)
class GetRequest:
    name: str
    offset: int = 0
    #: the digest the client will verify: "sha256" (the FILE line always
    #: carries it) or "blake3" (asked for with a fourth field; FILE then
    #: carries the BLAKE3 too)
    check: str = "sha256"

    def encode(self) -> bytes:
        check_name(self.name)
        _check_number(self.offset, "offset")
        if self.check not in CHECKS:
            raise LocalProtocolError(f"unknown digest algorithm: {self.check!r}")
        extra = b" blake3" if self.check == "blake3" else b""
        return b"%s GET %s %d%s\n" % (VERSION, encode_name(self.name), self.offset, extra)


@dataclass(frozen=True)
class PutRequest:
    name: str
    size: int
    digest: str

    def encode(self) -> bytes:
        check_name(self.name)
        _check_number(self.size, "size")
        if not _DIGEST.fullmatch(self.digest.encode("ascii", "replace")):
            raise LocalProtocolError(f"not a SHA-256 hex digest: {self.digest!r}")
        return b"%s PUT %s %d %s\n" % (VERSION, encode_name(self.name), self.size, self.digest.encode("ascii"))


Request = ListRequest | GetRequest | PutRequest


# -- replies -----------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    count: int


@dataclass(frozen=True)
class Entry:
    size: int
    name: str


@dataclass(frozen=True)
class FileHeader:
    size: int
    #: SHA-256 of the whole file
    digest: str
    #: BLAKE3 of the whole file: present exactly when the GET asked for it
    blake3: str | None = None


@dataclass(frozen=True)
class Ready:
    offset: int


@dataclass(frozen=True)
class Done:
    size: int
    digest: str


@dataclass(frozen=True)
class Waiting:
    """``WAIT <done> <total>``: the server is still hashing (``done`` of
    ``total`` bytes); sent before FILE or DONE so that a long hash does not
    look like a dead connection."""

    done: int
    total: int


Reply = Listing | FileHeader | Ready | Done | Waiting


# -- field syntax ------------------------------------------------------------------

_NUMBER = re.compile(rb"0|[1-9][0-9]{0,18}")
_DIGEST = re.compile(rb"[0-9a-f]{64}")
# RFC 3986 unreserved characters, "/" and pct-encoded triplets: nothing else
_WIRE_NAME = re.compile(rb"(?:[A-Za-z0-9._~/-]|%[0-9A-Fa-f]{2})+")
_CODE = re.compile(rb"[1-9][0-9]{2}")


def encode_name(name: str) -> bytes:
    return quote(name, safe="/").encode("ascii")


def decode_name(field: bytes) -> str:
    """Wire name -> path text, strictly: the grammar, valid UTF-8, then ``check_name``."""
    if not _WIRE_NAME.fullmatch(field):
        raise FilexferError(Status.BAD_REQUEST, "name must be percent-encoded (RFC 3986)")
    raw = bytearray()
    i = 0
    while i < len(field):
        if field[i] == 0x25:  # "%"
            raw.append(int(field[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(field[i])
            i += 1
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FilexferError(Status.BAD_REQUEST, "name is not valid UTF-8") from None
    problem = name_problem(name)
    if problem:
        raise FilexferError(Status.FORBIDDEN if "root" in problem or "reserved" in problem else Status.BAD_REQUEST, problem)
    return name


def name_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable relative path, or None.

    Refused: empty, too long or too deep, absolute, ``.`` or ``..`` or empty
    components, NUL or other control characters, backslashes (a Windows
    separator the server would not treat as one), and the reserved directory.
    """
    if not name:
        return "empty name"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return f"name longer than {MAX_NAME} bytes"
    if name.startswith("/"):
        return "absolute paths are outside the root"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "control characters in name"
    if "\\" in name:
        return "backslash in name"
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        return f"more than {MAX_DEPTH} path components"
    for part in parts:
        if part == "..":
            return "'..' leads outside the root"
        if part in ("", "."):
            return "empty or '.' path component"
    if parts[0] == RESERVED:
        return f"{RESERVED!r} is reserved"
    return None


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem:
        raise LocalProtocolError(f"bad name {name!r}: {problem}")


def _check_number(value: int, what: str) -> None:
    if not isinstance(value, int) or value < 0 or value > MAX_NUMBER:
        raise LocalProtocolError(f"{what} out of range: {value!r}")


def parse_number(field: bytes, what: str) -> int:
    if not _NUMBER.fullmatch(field):
        raise FilexferError(Status.BAD_REQUEST, f"{what} is not a decimal number")
    value = int(field)
    if value > MAX_NUMBER:
        raise FilexferError(Status.BAD_REQUEST, f"{what} too large")
    return value


def parse_digest(field: bytes) -> str:
    if not _DIGEST.fullmatch(field):
        raise FilexferError(Status.BAD_REQUEST, "digest must be 64 lowercase hex digits")
    return field.decode("ascii")


def _split(line: bytes) -> list[bytes]:
    """A header line (LF included) -> its space-separated fields, strictly."""
    if len(line) > MAX_LINE:
        raise FilexferError(Status.BAD_REQUEST, f"header longer than {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        raise FilexferError(Status.BAD_REQUEST, "header not terminated by LF")
    body = line[:-1]
    if any(b < 0x20 or b > 0x7E for b in body):
        raise FilexferError(Status.BAD_REQUEST, "header must be printable ASCII")
    fields = body.split(b" ")
    if any(not f for f in fields):
        raise FilexferError(Status.BAD_REQUEST, "fields must be separated by single spaces")
    return fields


def parse_request(line: bytes) -> Request:
    """One request line (LF included) -> a Request; FilexferError when malformed."""
    fields = _split(line)
    if fields[0] != VERSION:
        raise FilexferError(Status.BAD_REQUEST, "not an FX1 request")
    verb, args = (fields[1], fields[2:]) if len(fields) > 1 else (b"", [])
    if verb == b"LIST" and not args:
        return ListRequest()
    if verb == b"GET" and len(args) in (2, 3):
        check = "sha256"
        if len(args) == 3:
            if args[2] != b"blake3":
                raise FilexferError(Status.BAD_REQUEST, "unknown digest algorithm (only 'blake3' may be asked for)")
            check = "blake3"
        return GetRequest(decode_name(args[0]), parse_number(args[1], "offset"), check)
    if verb == b"PUT" and len(args) == 3:
        return PutRequest(decode_name(args[0]), parse_number(args[1], "size"), parse_digest(args[2]))
    if verb in (b"LIST", b"GET", b"PUT"):
        raise FilexferError(Status.BAD_REQUEST, f"wrong number of fields for {verb.decode()}")
    raise FilexferError(Status.BAD_REQUEST, "unknown request (LIST, GET or PUT)")


def encode_error(code: int, reason: str) -> bytes:
    """``ERR <code> <reason>``: the reason is squeezed to printable ASCII, capped."""
    if not 100 <= int(code) <= 999:
        raise LocalProtocolError(f"status code out of range: {code!r}")
    text = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in reason).strip() or "error"
    text = " ".join(text.split())[:MAX_REASON]
    return b"ERR %d %s\n" % (int(code), text.encode("ascii"))


def parse_reply(line: bytes, expect: str) -> Reply:
    """One reply line -> a Reply of the kind ``expect`` (LIST, FILE, READY, DONE),
    or ``Waiting`` where the server may send WAIT (before FILE and DONE).

    An ``ERR`` line raises ``FilexferError(remote=True)`` with the server's
    code and reason; anything else unexpected raises ``FilexferError``.
    """
    fields = _split(line)
    kind = fields[0]
    if kind == b"ERR":
        if len(fields) < 3 or not _CODE.fullmatch(fields[1]):
            raise FilexferError(Status.BAD_REQUEST, "malformed ERR line")
        reason = b" ".join(fields[2:]).decode("ascii")
        if len(reason) > MAX_REASON:
            raise FilexferError(Status.BAD_REQUEST, "ERR reason too long")
        raise FilexferError(int(fields[1]), reason, remote=True)
    args = fields[1:]
    if kind == b"WAIT" and expect in ("FILE", "DONE"):
        if len(args) != 2:
            raise FilexferError(Status.BAD_REQUEST, "wrong number of fields in WAIT")
        done, total = parse_number(args[0], "done"), parse_number(args[1], "total")
        if done > total:
            raise FilexferError(Status.BAD_REQUEST, "WAIT progress beyond its total")
        return Waiting(done, total)
    if kind.decode("ascii") != expect:
        raise FilexferError(Status.BAD_REQUEST, f"expected {expect}, got {kind[:16]!r}")
    if expect == "LIST" and len(args) == 1:
        count = parse_number(args[0], "count")
        if count > MAX_ENTRIES:
            raise FilexferError(Status.BAD_REQUEST, "too many entries announced")
        return Listing(count)
    if expect == "FILE" and len(args) in (2, 3):
        return FileHeader(parse_number(args[0], "size"), parse_digest(args[1]),
                          parse_digest(args[2]) if len(args) == 3 else None)
    if expect == "READY" and len(args) == 1:
        return Ready(parse_number(args[0], "offset"))
    if expect == "DONE" and len(args) == 2:
        return Done(parse_number(args[0], "size"), parse_digest(args[1]))
    raise FilexferError(Status.BAD_REQUEST, f"wrong number of fields in {expect} reply")


def parse_entry(line: bytes) -> Entry:
    fields = _split(line)
    if len(fields) != 2:
        raise FilexferError(Status.BAD_REQUEST, "listing entry must be '<size> <name>'")
    return Entry(parse_number(fields[0], "size"), decode_name(fields[1]))


def encode_entry(entry: Entry) -> bytes:
    check_name(entry.name)
    _check_number(entry.size, "size")
    return b"%d %s\n" % (entry.size, encode_name(entry.name))


# -- line framing ------------------------------------------------------------------


class LineBuffer:
    """Collect bytes until LF, never holding more than ``limit`` bytes.

    ``feed`` returns the complete line (LF included) or None; bytes after the
    LF stay in ``rest`` (the start of a body, or the next line).  More than
    ``limit`` bytes without an LF raises FilexferError.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.rest = bytearray()

    def feed(self, data: bytes | bytearray | memoryview = b"") -> bytes | None:
        self.rest += data
        end = self.rest.find(b"\n", 0, self.limit)
        if end < 0:
            if len(self.rest) >= self.limit:
                raise FilexferError(Status.BAD_REQUEST, f"header longer than {self.limit} bytes")
            return None
        line = bytes(self.rest[: end + 1])
        del self.rest[: end + 1]
        return line

    def take_rest(self) -> bytes:
        data = bytes(self.rest)
        self.rest.clear()
        return data


# -- state machines ----------------------------------------------------------------


class State(enum.Enum):
    SEND_REQUEST = "send-request"
    AWAIT_REQUEST = "await-request"
    AWAIT_REPLY = "await-reply"
    ENTRIES = "entries"
    BODY = "body"
    AWAIT_DONE = "await-done"
    DONE = "done"
    FAILED = "failed"


class _Machine:
    state: State

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"{type(self).__name__}: not allowed in state {self.state.value}")


class ClientTransfer(_Machine):
    """The client side of one request.

    ``start()`` gives the request bytes; ``handle_line(line)`` takes each
    header line from the server and returns the Reply (or Entry) it carried;
    body bytes are counted with ``body_received`` (GET) or ``body_sent`` (PUT).
    ``body_remaining`` says how many body bytes are still due.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.state = State.SEND_REQUEST
        self.body_remaining = 0
        self.entries_remaining = 0
        self.header: FileHeader | None = None
        self.ready: Ready | None = None
        self.waits = 0

    def start(self) -> bytes:
        self._expect(State.SEND_REQUEST)
        self.state = State.AWAIT_REPLY
        return self.request.encode()

    def handle_line(self, line: bytes) -> Reply | Entry:
        try:
            return self._handle_line(line)
        except FilexferError:
            self.state = State.FAILED
            raise

    def _handle_line(self, line: bytes) -> Reply | Entry:
        req = self.request
        if self.state is State.ENTRIES:
            entry = parse_entry(line)
            self.entries_remaining -= 1
            if self.entries_remaining == 0:
                self.state = State.DONE
            return entry
        if self.state is State.BODY and isinstance(req, PutRequest):
            # the server may refuse mid-body (disk full): only ERR can come now
            parse_reply(line, "ERR")  # raises: the server's ERR, or a protocol error
        if self.state is State.AWAIT_DONE:
            assert isinstance(req, PutRequest)
            done = parse_reply(line, "DONE")
            if isinstance(done, Waiting):
                return self._waiting(done)
            assert isinstance(done, Done)
            if (done.size, done.digest) != (req.size, req.digest):
                raise FilexferError(Status.DIGEST_MISMATCH, "server confirmed a different size or digest")
            self.state = State.DONE
            return done
        self._expect(State.AWAIT_REPLY)
        if isinstance(req, ListRequest):
            listing = parse_reply(line, "LIST")
            assert isinstance(listing, Listing)
            self.entries_remaining = listing.count
            self.state = State.ENTRIES if listing.count else State.DONE
            return listing
        if isinstance(req, GetRequest):
            header = parse_reply(line, "FILE")
            if isinstance(header, Waiting):
                return self._waiting(header)
            assert isinstance(header, FileHeader)
            if (header.blake3 is not None) != (req.check == "blake3"):
                # strict both ways: an old server that ignored the request, or a
                # BLAKE3 nobody asked for, is not what this client can verify
                raise FilexferError(Status.BAD_REQUEST, "FILE digests do not match the digest asked for")
            if req.offset > header.size:
                raise FilexferError(Status.BAD_OFFSET, "server accepted an offset beyond the file")
            self.header = header
            self.body_remaining = header.size - req.offset
            self.state = State.BODY if self.body_remaining else State.DONE
            return header
        ready = parse_reply(line, "READY")
        assert isinstance(ready, Ready)
        if ready.offset > req.size:
            raise FilexferError(Status.BAD_OFFSET, "server asked for an offset beyond the file")
        self.ready = ready
        self.body_remaining = req.size - ready.offset
        self.state = State.BODY if self.body_remaining else State.AWAIT_DONE
        return ready

    def _waiting(self, waiting: Waiting) -> Waiting:
        self.waits += 1
        if self.waits > MAX_WAITS:
            raise FilexferError(Status.BAD_REQUEST, "too many WAIT lines")
        return waiting

    def body_received(self, n: int) -> None:
        """GET: ``n`` body bytes arrived (more than announced is a protocol error)."""
        self._expect(State.BODY)
        if not isinstance(self.request, GetRequest):
            raise LocalProtocolError("body_received is for GET")
        self._count(n)

    def body_sent(self, n: int) -> None:
        """PUT: ``n`` body bytes were sent."""
        self._expect(State.BODY)
        if not isinstance(self.request, PutRequest):
            raise LocalProtocolError("body_sent is for PUT")
        if n > self.body_remaining:
            raise LocalProtocolError("sent more than the announced size")
        self._count(n)

    def _count(self, n: int) -> None:
        if n < 0:
            raise LocalProtocolError("negative byte count")
        if n > self.body_remaining:
            self.state = State.FAILED
            raise FilexferError(Status.BAD_REQUEST, "more body bytes than announced")
        self.body_remaining -= n
        if self.body_remaining == 0:
            self.state = State.AWAIT_DONE if isinstance(self.request, PutRequest) else State.DONE

    def body_eof(self) -> None:
        """The connection ended; an error unless the body was complete."""
        if self.state is State.BODY:
            self.state = State.FAILED
            raise FilexferError(Status.BAD_REQUEST, f"connection closed with {self.body_remaining} body bytes missing")
        if self.state not in (State.DONE, State.FAILED):
            self.state = State.FAILED
            raise FilexferError(Status.BAD_REQUEST, "connection closed before the reply")


class ServerTransfer(_Machine):
    """The server side of one request.

    ``handle_line(line)`` parses the request (FilexferError when malformed;
    answer it with ``error``).  The service then answers with ``listing`` +
    ``entry``..., ``file`` (then ``body_sent``), or ``ready`` (then
    ``body_received``, then ``done``); ``error`` ends any state.
    """

    def __init__(self) -> None:
        self.state = State.AWAIT_REQUEST
        self.request: Request | None = None
        self.body_remaining = 0
        self.entries_remaining = 0

    def handle_line(self, line: bytes) -> Request:
        self._expect(State.AWAIT_REQUEST)
        try:
            self.request = parse_request(line)
        except FilexferError:
            self.state = State.FAILED
            raise
        self.state = State.AWAIT_REPLY
        return self.request

    def listing(self, count: int) -> bytes:
        self._expect(State.AWAIT_REPLY)
        if not isinstance(self.request, ListRequest):
            raise LocalProtocolError("listing answers LIST")
        if not 0 <= count <= MAX_ENTRIES:
            raise LocalProtocolError(f"entry count out of range: {count}")
        self.entries_remaining = count
        self.state = State.ENTRIES if count else State.DONE
        return b"LIST %d\n" % count

    def entry(self, entry: Entry) -> bytes:
        self._expect(State.ENTRIES)
        data = encode_entry(entry)
        self.entries_remaining -= 1
        if self.entries_remaining == 0:
            self.state = State.DONE
        return data

    def file(self, size: int, digest: str, blake3: str | None = None) -> bytes:
        """GET: the header (``blake3`` exactly when the request asked for it);
        then ``size - offset`` body bytes are due."""
        self._expect(State.AWAIT_REPLY)
        req = self.request
        if not isinstance(req, GetRequest):
            raise LocalProtocolError("file answers GET")
        _check_number(size, "size")
        if req.offset > size:
            raise LocalProtocolError("offset beyond the file: answer with error(416)")
        digests = [digest] if blake3 is None else [digest, blake3]
        if any(not _DIGEST.fullmatch(d.encode("ascii", "replace")) for d in digests):
            raise LocalProtocolError("bad digest")
        if (blake3 is not None) != (req.check == "blake3"):
            raise LocalProtocolError("FILE carries a BLAKE3 exactly when the GET asked for it")
        self.body_remaining = size - req.offset
        self.state = State.BODY if self.body_remaining else State.DONE
        return b"FILE %d %s\n" % (size, " ".join(digests).encode("ascii"))

    def ready(self, offset: int) -> bytes:
        """PUT: go ahead from ``offset`` (bytes the server already holds)."""
        self._expect(State.AWAIT_REPLY)
        req = self.request
        if not isinstance(req, PutRequest):
            raise LocalProtocolError("ready answers PUT")
        if not 0 <= offset <= req.size:
            raise LocalProtocolError("resume offset out of range")
        self.body_remaining = req.size - offset
        self.state = State.BODY if self.body_remaining else State.AWAIT_DONE
        return b"READY %d\n" % offset

    def wait(self, done: int, total: int) -> bytes:
        """``WAIT``: still hashing; allowed before FILE (GET) and before DONE (PUT)."""
        get_pending = self.state is State.AWAIT_REPLY and isinstance(self.request, GetRequest)
        if not (get_pending or self.state is State.AWAIT_DONE):
            raise LocalProtocolError(f"WAIT not allowed in state {self.state.value}")
        _check_number(done, "done")
        _check_number(total, "total")
        return b"WAIT %d %d\n" % (min(done, total), total)

    def body_sent(self, n: int) -> None:
        if n == 0 and self.body_remaining == 0:
            return  # an empty body: nothing to count, in any state
        self._expect(State.BODY)
        if not isinstance(self.request, GetRequest) or not 0 <= n <= self.body_remaining:
            raise LocalProtocolError("body_sent out of range")
        self.body_remaining -= n
        if self.body_remaining == 0:
            self.state = State.DONE

    def body_received(self, n: int) -> None:
        if n == 0 and self.body_remaining == 0:
            return  # an empty body: nothing to count, in any state
        self._expect(State.BODY)
        if not isinstance(self.request, PutRequest) or not 0 <= n <= self.body_remaining:
            raise LocalProtocolError("body_received out of range (read at most body_remaining)")
        self.body_remaining -= n
        if self.body_remaining == 0:
            self.state = State.AWAIT_DONE

    def done(self, digest: str) -> bytes:
        """PUT: the stored file's digest matched; the upload is complete."""
        self._expect(State.AWAIT_DONE)
        req = self.request
        assert isinstance(req, PutRequest)
        if digest != req.digest:
            raise LocalProtocolError("done() with a digest that does not match: answer with error(422)")
        self.state = State.DONE
        return b"DONE %d %s\n" % (req.size, digest.encode("ascii"))

    def error(self, code: int, reason: str) -> bytes:
        if self.state is State.DONE:
            raise LocalProtocolError("the exchange is already complete")
        self.state = State.FAILED
        return encode_error(code, reason)
