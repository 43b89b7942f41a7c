"""Property tests (hypothesis) for every parser that reads peer or user input.

The contract checked everywhere: whatever the bytes, a parser either returns
a value or raises its *documented* error (``RemoteProtocolError`` with a
protocol code for wire formats, ``ConfigError`` for configs) — never
IndexError, ValueError, UnicodeError or anything else, which in a daemon would
become a traceback or a dropped service.  Where there is an encoder, what it
writes parses back to the same value.

A parser whose module has not landed yet is skipped with the reason.
"""

from __future__ import annotations

import importlib
import os
import string
from types import ModuleType

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from inetkit.errors import ConfigError, LocalProtocolError, RemoteProtocolError

#: INETKIT_HYPOTHESIS_EXAMPLES raises the count for a deeper run (CI: 200 per property)
FAST = settings(max_examples=int(os.environ.get("INETKIT_HYPOTHESIS_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - only while a module has not landed
        pytest.skip(f"{name} not available yet: {exc}")


# -- TFTP packets (RFC 1350 §5, RFC 2347 §2) -------------------------------------------------

_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
_opt_name = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)


def _tftp_packet() -> st.SearchStrategy[object]:
    P = _module("inetkit.proto.tftp.packets")
    block = st.integers(0, 0xFFFF)
    options = st.dictionaries(_opt_name, _text, max_size=5)
    return st.one_of(
        st.builds(P.Request, st.sampled_from([P.RRQ, P.WRQ]), _text.filter(bool), st.sampled_from(P.MODES), options),
        st.builds(P.Data, block, st.binary(max_size=600)),
        st.builds(P.Ack, block),
        st.builds(P.Error, block, _text),
        st.builds(P.OAck, st.dictionaries(_opt_name, _text, min_size=1, max_size=5)),
    )


@FAST
@given(st.binary(max_size=700))
@example(b"\x00\x01a\x00octet\x00blksize\x00\xc2\xb2\x00")
@example(b"\x00\x06")
@example(b"\x00\x05")
def test_tftp_decode_raises_only_protocol_errors(data: bytes) -> None:
    P = _module("inetkit.proto.tftp.packets")
    try:
        P.decode(data)
    except RemoteProtocolError as exc:
        assert exc.code in P.ERROR_NAMES


@FAST
@given(st.data())
def test_tftp_packets_round_trip(data: st.DataObject) -> None:
    P = _module("inetkit.proto.tftp.packets")
    packet = data.draw(_tftp_packet())
    assert P.decode(P.encode(packet)) == packet


@FAST
@given(st.dictionaries(st.sampled_from(["blksize", "windowsize", "timeout", "tsize", "x"]) | _opt_name,
                       st.text(max_size=25) | st.integers(-5, 10**15).map(str), max_size=6),
       st.booleans(), st.one_of(st.none(), st.integers(0, 10**12)), st.one_of(st.none(), st.integers(0, 10**9)))
@example({"blksize": "²"}, True, 100, None)
@example({"tsize": "١٢"}, False, None, 10)
@example({"tsize": "0"}, True, 10**12, None)  # a 1 TB file: the client must accept the OACK we send
def test_tftp_negotiate_only_option_errors(options: dict[str, str], is_read: bool, file_size: int | None,
                                            max_size: int | None) -> None:
    """negotiate never raises except TsizeTooLarge (ERROR 3); granted values are in range."""
    O = _module("inetkit.proto.tftp.options")
    limits = O.Limits(max_size=max_size)
    try:
        oack, s = O.negotiate(options, limits, is_read=is_read, file_size=file_size)
    except O.TsizeTooLarge as exc:
        assert not is_read and exc.code == 3
        return
    assert O.MIN_BLKSIZE <= s.blksize <= 65464
    assert 1 <= s.windowsize <= limits.max_windowsize
    assert set(oack) <= set(options)
    # what we grant is what a client may accept
    assert O.accept_oack(options, oack) is not None


@FAST
@given(st.dictionaries(_opt_name | st.sampled_from(["blksize", "windowsize", "timeout", "tsize"]),
                       st.text(max_size=12), max_size=5),
       st.dictionaries(_opt_name | st.sampled_from(["blksize", "windowsize", "timeout", "tsize"]),
                       st.text(max_size=12), max_size=5))
@example({"blksize": "512"}, {"blksize": "³"})
def test_tftp_accept_oack_only_option_errors(requested: dict[str, str], oack: dict[str, str]) -> None:
    O = _module("inetkit.proto.tftp.options")
    try:
        O.accept_oack(requested, oack)
    except RemoteProtocolError as exc:
        assert exc.code == 8


@FAST
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_netascii_round_trip_in_any_chunks(data: bytes, cuts: list[int]) -> None:
    N = _module("inetkit.proto.tftp.netascii")
    wire = N.encode(data)
    assert len(wire) == N.encoded_size(data)
    decoder = N.Decoder()
    out = b""
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    for a, b in zip(points, points[1:]):
        out += decoder.feed(wire[a:b])
    out += decoder.flush()
    assert out == data


@FAST
@given(st.lists(st.binary(max_size=80), max_size=20), st.floats(0, 100))
def test_tftp_sessions_survive_any_datagrams(datagrams: list[bytes], dt: float) -> None:
    """A server Sender/Receiver fed arbitrary datagrams returns datagrams or
    fails cleanly (``failure`` set) — never an exception."""
    S = _module("inetkit.proto.tftp.session")
    O = _module("inetkit.proto.tftp.options")

    class Blocks:
        def block(self, index: int) -> bytes:
            return b"x" * 512 if index < 3 else b"end"

        def release(self, below: int) -> None:
            pass

    received: list[bytes] = []
    now = 0.0
    for session in (S.Sender(Blocks(), O.Settings(), now), S.Receiver(received.append, O.Settings(), now)):
        session.start(now)
        for d in datagrams:
            now += dt / 10
            for out in session.receive(d, now):
                assert isinstance(out, bytes) and len(out) >= 4
            due = session.next_deadline()
            if due is not None and due <= now:
                session.on_timer(now)
    assert all(len(r) <= 512 for r in received)


# -- the file-transfer headers (FX1) ---------------------------------------------------------

_path_part = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"), min_size=1,
                     max_size=12).filter(lambda p: p not in (".", ".."))
_names = st.lists(_path_part, min_size=1, max_size=4).map("/".join)


@FAST
@given(st.binary(max_size=300))
@example(b"FX1 GET %ff%fe 0\n")
@example(b"FX1 GET %2e%2e/x 0\n")
@example(b"FX1 GET a 99999999999999999999\n")
@example(b"FX1 GET %\n")
def test_filexfer_request_raises_only_filexfer_errors(line: bytes) -> None:
    F = _module("inetkit.proto.filexfer")
    try:
        F.parse_request(line)
    except F.FilexferError as exc:
        assert 400 <= exc.status <= 599


@FAST
@given(st.sampled_from(["FX1 GET ", "FX1 PUT ", "FX1 LIST", "ERR 4", "FILE ", "READY ", "DONE ", "LIST ", ""]),
       st.binary(max_size=200), st.sampled_from(["LIST", "FILE", "READY", "DONE"]))
def test_filexfer_replies_raise_only_filexfer_errors(prefix: str, rest: bytes, expect: str) -> None:
    F = _module("inetkit.proto.filexfer")
    line = prefix.encode() + rest + b"\n"
    for parse in (lambda: F.parse_reply(line, expect), lambda: F.parse_entry(line)):
        try:
            parse()
        except F.FilexferError:
            pass


@FAST
@given(_names, st.integers(0, 2**63 - 1), st.binary(max_size=32))
def test_filexfer_headers_round_trip(name: str, number: int, blob: bytes) -> None:
    import hashlib

    F = _module("inetkit.proto.filexfer")
    assume(F.name_problem(name) is None)
    digest = hashlib.sha256(blob).hexdigest()
    assert F.parse_request(F.GetRequest(name, number).encode()) == F.GetRequest(name, number)
    assert F.parse_request(F.PutRequest(name, number, digest).encode()) == F.PutRequest(name, number, digest)
    assert F.parse_request(F.ListRequest().encode()) == F.ListRequest()
    assert F.parse_entry(F.encode_entry(F.Entry(number, name))) == F.Entry(number, name)


@FAST
@given(st.text(max_size=60))
def test_filexfer_names_are_never_outside_the_root(name: str) -> None:
    """A name that passes the check has no way out of the root: relative,
    no '..' component, no control characters, no backslash."""
    F = _module("inetkit.proto.filexfer")
    if F.name_problem(name) is None:
        parts = name.split("/")
        assert not name.startswith("/") and ".." not in parts and "\\" not in name
        assert all(ord(c) >= 0x20 for c in name)
        # and it survives the wire
        assert F.decode_name(F.encode_name(name)) == name


@FAST
@given(st.integers(100, 999), st.text(max_size=300))
def test_filexfer_error_lines_round_trip(code: int, reason: str) -> None:
    F = _module("inetkit.proto.filexfer")
    line = F.encode_error(code, reason)
    assert len(line) <= F.MAX_LINE
    with pytest.raises(F.FilexferError) as info:
        F.parse_reply(line, "FILE")
    assert info.value.remote and info.value.status == code


@FAST
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_filexfer_line_buffer_is_bounded(chunks: list[bytes]) -> None:
    F = _module("inetkit.proto.filexfer")
    buf = F.LineBuffer(limit=256)
    try:
        for chunk in chunks:
            line = buf.feed(chunk)
            if line is not None:
                assert line.endswith(b"\n") and len(line) <= 256
                return
    except F.FilexferError as exc:
        assert exc.status == 400


# -- chat lines ------------------------------------------------------------------------------


@FAST
@given(st.lists(st.binary(max_size=120), max_size=30), st.integers(8, 64))
def test_chat_framer_lines_are_capped_and_complete(chunks: list[bytes], cap: int) -> None:
    C = _module("inetkit.proto.chat")
    framer = C.LineFramer(cap)
    stream = b"".join(chunks)
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
        assert framer.pending <= cap + 1 + max((len(c) for c in chunks), default=0)
    lines = [x for x in out if isinstance(x, bytes)]
    assert all(len(x) <= cap and b"\n" not in x for x in lines)
    # every short complete line of the input comes out, in order
    expected = [ln[:-1] if ln.endswith(b"\r") else ln for ln in stream.split(b"\n")[:-1]]
    short = [ln for ln in expected if len(ln) <= cap]
    if all(len(ln) <= cap for ln in expected):
        assert lines == short


@FAST
@given(st.text(max_size=200))
@example("\x1b]0;title\x07hi\x9b31m\u202eevil\x1b[2J")
def test_chat_sanitize_leaves_no_controls_and_is_idempotent(text: str) -> None:
    C = _module("inetkit.proto.chat")
    clean = C.sanitize(text)
    assert C.sanitize(clean) == clean
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in clean)
    assert not set(clean) & {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


@FAST
@given(st.lists(st.tuples(st.integers(1, 3), st.binary(max_size=100)), max_size=40))
@example([(1, b"alice\n"), (2, b"alice\n/nick ALICE\n/msg alice \x1b[2Jhi\n"), (1, b"/join \xff\xfe\n/who\n")])
def test_chat_hub_takes_any_bytes(events: list[tuple[int, bytes]]) -> None:
    """Three clients send arbitrary bytes: the hub only ever answers with
    lines of sanitized text, never raises."""
    C = _module("inetkit.proto.chat")
    hub = C.ChatHub(C.HubConfig())
    now = 0.0
    for cid in (1, 2, 3):
        hub.connect(cid, "127.0.0.1", now)
    for cid, data in events:
        now += 0.05
        box = hub.receive(cid, data, now)
        for _, out in box.items():
            assert b"\x1b" not in out
            assert all(b >= 0x20 or b in (0x0A, 0x0D) for b in out)
    for cid in (1, 2, 3):
        hub.disconnect(cid, "bye")


# -- configs -----------------------------------------------------------------------------------

_toml_key = st.sampled_from(["port", "proto", "model", "handler", "program", "bind", "options", "limits", "user",
                             "max_connections", "idle_timeout", "workers", "grace", "log_format", "x"])
_toml_value = st.one_of(
    st.integers(-(2**40), 2**40).map(str), st.sampled_from(['"tcp"', '"udp"', '["tcp", "udp"]', '"async"', '"exec"',
                                                             '"fork"', "true", '["/bin/true"]', '"::1"', '"nope"',
                                                             "1.5", "-0.0", "nan", "inf", '"{fd}"', "[]", "{}",
                                                             '"echo"', '"tftp"', '"999999"', '"http"']),
    st.text(string.printable, max_size=10).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
)


@st.composite
def _toml_docs(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append("[daemon]")
        for _ in range(draw(st.integers(0, 3))):
            lines.append(f"{draw(_toml_key)} = {draw(_toml_value)}")
    for i in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["echo", "greeting", "tftp", "files", "chat", "x y", "han", f"s{i}"]))
        lines.append(f'[services."{name}"]')
        for _ in range(draw(st.integers(0, 5))):
            lines.append(f"{draw(_toml_key)} = {draw(_toml_value)}")
        if draw(st.booleans()):
            lines.append(f'[services."{name}".{draw(st.sampled_from(["options", "limits"]))}]')
            for _ in range(draw(st.integers(0, 3))):
                lines.append(f"{draw(_toml_key)} = {draw(_toml_value)}")
    return "\n".join(lines) + "\n"


@FAST
@given(st.one_of(_toml_docs(), st.text(max_size=200)))
@example("[services.echo]\nport = 99999\n")
@example("[services.echo]\nport = 7\nproto = 5\n")
@example("[services.echo.limits]\nmax_connections = -1\n")
@example('[services.x]\nport = 1\nprogram = []\nmodel = "exec"\n')
@example("[daemon]\ngrace = nan\n")
def test_toml_config_raises_only_config_error(text: str) -> None:
    T = _module("inetkit.config.toml")
    try:
        T.parse_toml(text, "fuzz.toml")
    except ConfigError as exc:
        assert str(exc)


_conf_field = st.sampled_from(["echo", "7", "0", "stream", "dgram", "tcp", "udp", "tcp6", "udp4", "wait", "nowait",
                               "nowait.5", "nowait/3/10/2", "wait.x", "root", "nobody.nogroup", "x:y", "internal",
                               "/bin/cat", "cat", "127.0.0.1:echo", "[::1]:7", "*:", "nowait.-1", "9" * 20, "#",
                               "nowait/0/0/0", "/usr/sbin/in.tftpd", "-s", "/srv"])


@FAST
@given(st.lists(st.one_of(st.lists(_conf_field, max_size=9).map(" ".join), st.text(max_size=60)), max_size=6))
@example(["127.0.0.1:"])
@example(["echo stream tcp nowait.999999999999999999999 root internal"])
@example(["0 dgram udp wait root /bin/true true", "*:"])
def test_inetd_conf_raises_only_config_error(lines: list[str]) -> None:
    I = _module("inetkit.config.inetd_conf")
    try:
        I.parse_inetd_conf("\n".join(lines), "fuzz.conf")
    except ConfigError as exc:
        assert str(exc)


# -- the seed protocols' readers ---------------------------------------------------------------


@FAST
@given(st.lists(st.binary(max_size=100), max_size=10), st.integers(1, 64))
def test_greeting_reader_is_capped(chunks: list[bytes], cap: int) -> None:
    G = _module("inetkit.proto.greeting")
    reader = G.CStringReader(cap)
    for chunk in chunks:
        message = reader.feed(chunk)
        if message is not None:
            assert len(message.text) <= cap and b"\0" not in message.text
            return
    message = reader.eof()
    assert message is None or len(message.text) <= cap


def test_local_misuse_is_a_local_error() -> None:
    """Encoders refuse what cannot go on the wire with LocalProtocolError."""
    P = _module("inetkit.proto.tftp.packets")
    F = _module("inetkit.proto.filexfer")
    with pytest.raises(LocalProtocolError):
        P.encode_request(P.RRQ, "a\0b")
    with pytest.raises(LocalProtocolError):
        F.GetRequest("../etc/passwd", 0).encode()
    with pytest.raises(LocalProtocolError):
        F.GetRequest("a", -1).encode()
