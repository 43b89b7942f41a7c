"""FX1 client core <-> server core, in memory (no sockets, no files).

A tiny in-memory server plays the service's policy (a dict of files, a dict
of partial uploads) so that whole exchanges, resumes included, run through
both state machines byte for byte.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from inetkit.proto import filexfer as fx


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemoryServer:
    def __init__(self, files: dict[str, bytes], allow_upload: bool = True) -> None:
        self.files = files
        self.partials: dict[tuple[str, int, str], bytearray] = {}
        self.allow_upload = allow_upload

    def exchange(self, wire: bytes, cut_after: int | None = None) -> bytes:
        """Serve one connection whose client bytes are ``wire``; the reply
        stream, cut after ``cut_after`` client body bytes if given."""
        core = fx.ServerTransfer()
        lines = fx.LineBuffer()
        try:
            line = lines.feed(wire)
            assert line is not None
            request = core.handle_line(line)
        except fx.FilexferError as exc:
            return core.error(exc.status, exc.reason)
        body = lines.take_rest()
        if isinstance(request, fx.ListRequest):
            names = sorted(self.files)
            return core.listing(len(names)) + b"".join(core.entry(fx.Entry(len(self.files[n]), n)) for n in names)
        if isinstance(request, fx.GetRequest):
            data = self.files.get(request.name)
            if data is None:
                return core.error(404, "no such file")
            if request.offset > len(data):
                return core.error(416, "offset beyond the file")
            out = core.file(len(data), sha(data)) + data[request.offset :]
            core.body_sent(len(data) - request.offset)
            return out
        if not self.allow_upload:
            return core.error(403, "uploads are disabled")
        key = (request.name, request.size, request.digest)
        part = self.partials.setdefault(key, bytearray())
        out = core.ready(len(part))
        if cut_after is not None:
            body = body[:cut_after]
        take = body[: core.body_remaining]
        part += take
        core.body_received(len(take))
        if core.body_remaining:
            return out  # connection lost: the partial stays
        del self.partials[key]
        if sha(bytes(part)) != request.digest:
            return out + core.error(422, "SHA-256 mismatch")
        self.files[request.name] = bytes(part)
        return out + core.done(request.digest)


def client_get(server: MemoryServer, name: str, have: bytes = b"", cut_after: int | None = None) -> tuple[bytes, bool]:
    """Returns (bytes now held, verified)."""
    core = fx.ClientTransfer(fx.GetRequest(name, len(have)))
    reply = server.exchange(core.start())
    if cut_after is not None:
        reply = reply[:cut_after]
    lines = fx.LineBuffer()
    line = lines.feed(reply)
    assert line is not None
    header = core.handle_line(line)
    assert isinstance(header, fx.FileHeader)
    body = lines.take_rest()
    held = have + body
    if body:
        core.body_received(len(body))
    try:
        core.body_eof()
    except fx.FilexferError:
        return held, False
    return held, sha(held) == header.digest


def client_put(server: MemoryServer, name: str, data: bytes, cut_after: int | None = None) -> fx.Reply | None:
    core = fx.ClientTransfer(fx.PutRequest(name, len(data), sha(data)))
    request = core.start()
    # the client sends the body from the offset READY names; in memory the
    # exchange is one call, so the client's side looks the offset up first
    key = (name, len(data), sha(data))
    offset = len(server.partials.get(key, b""))
    reply = server.exchange(request + data[offset:], cut_after)
    lines = fx.LineBuffer()
    line = lines.feed(reply)
    assert line is not None
    ready = core.handle_line(line)
    assert ready == fx.Ready(offset)
    sent = len(data) - offset if cut_after is None else min(cut_after, len(data) - offset)
    if sent:
        core.body_sent(sent)
    line = lines.feed()
    if line is None:
        return None
    return core.handle_line(line)  # type: ignore[return-value]


def test_list_get_put_round_trip() -> None:
    server = MemoryServer({"a": b"alpha", "dir/b c": b""})
    core = fx.ClientTransfer(fx.ListRequest())
    reply = server.exchange(core.start())
    lines = fx.LineBuffer()
    got = []
    while (line := lines.feed() if got else lines.feed(reply)) is not None:
        got.append(core.handle_line(line))
    assert got == [fx.Listing(2), fx.Entry(5, "a"), fx.Entry(0, "dir/b c")]
    assert core.state is fx.State.DONE
    assert client_get(server, "a") == (b"alpha", True)
    assert client_get(server, "dir/b c") == (b"", True)
    assert client_put(server, "new", b"payload") == fx.Done(7, sha(b"payload"))
    assert server.files["new"] == b"payload"


@pytest.mark.parametrize("seed", range(5))
def test_get_resumes_after_a_cut_at_a_random_offset(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1, 5000))
    server = MemoryServer({"f": data})
    header_len = len(b"FILE %d %s\n" % (len(data), sha(data).encode()))
    cut = header_len + rng.randrange(0, len(data))
    held, ok = client_get(server, "f", cut_after=cut)
    assert not ok and len(held) < len(data)
    held, ok = client_get(server, "f", have=held)
    assert ok and held == data


@pytest.mark.parametrize("seed", range(5))
def test_put_resumes_after_a_cut_at_a_random_offset(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(2, 5000))
    server = MemoryServer({})
    assert client_put(server, "f", data, cut_after=rng.randrange(1, len(data))) is None
    assert "f" not in server.files and server.partials  # only a partial
    assert client_put(server, "f", data) == fx.Done(len(data), sha(data))
    assert server.files["f"] == data and not server.partials


def test_errors_reach_the_client_as_remote_errors() -> None:
    server = MemoryServer({"f": b"x"}, allow_upload=False)
    with pytest.raises(fx.FilexferError) as info:
        client_get(server, "missing")
    assert info.value.remote and info.value.status == 404
    with pytest.raises(fx.FilexferError) as info:
        client_put(server, "g", b"data")
    assert info.value.status == 403 and "g" not in server.files
    with pytest.raises(fx.FilexferError) as info:
        client_get(server, "f", have=b"xx")
    assert info.value.status == 416
    assert server.exchange(b"GET f 0\n").startswith(b"ERR 400 ")


def test_a_corrupted_upload_is_refused_and_not_stored() -> None:
    server = MemoryServer({})
    core = fx.ClientTransfer(fx.PutRequest("f", 4, sha(b"good")))
    reply = server.exchange(core.start() + b"evil")
    lines = fx.LineBuffer()
    assert core.handle_line(lines.feed(reply) or b"") == fx.Ready(0)
    core.body_sent(4)
    with pytest.raises(fx.FilexferError) as info:
        core.handle_line(lines.feed() or b"")
    assert info.value.status == 422 and "f" not in server.files
