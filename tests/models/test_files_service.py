"""The ``files`` service (FX1) on real loopback sockets, under every model.

Round trips of the edge sizes, root confinement, upload policy (disabled,
overwrite, size cap, free space, disk full), integrity (a bad digest leaves
nothing), resume after a cut at a random offset in both directions,
concurrency, and one bounded 1 GiB sparse-file download.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inetkit.clients.files import BUFFER, TransferError, download, list_files, upload
from inetkit.io.filehash import new_hash
from inetkit.proto.filexfer import RESERVED, Entry, PutRequest
from inetkit.testing.cutproxy import CutProxy
from inetkit.testing.net import connect
from inetkit.testing.running import running_service

MODELS = ["async", "iterative", "thread", "fork"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b3(data: bytes) -> str:
    digest = new_hash("blake3")
    digest.update(data)
    return str(digest.hexdigest())


def files_service(root: Path, model: str = "async", **options: Any) -> Any:
    return running_service("files", model=model, options={"root": str(root), **options})


def raw_exchange(address: tuple[str, int], data: bytes, limit: int = 65536) -> bytes:
    """Send ``data``, half-close, read the whole reply (bounded)."""
    with connect(address, timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while sum(map(len, chunks)) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def no_partials(root: Path) -> bool:
    partial_dir = root / RESERVED
    return not partial_dir.exists() or not any(partial_dir.iterdir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.mark.parametrize("model", MODELS)
def test_edge_sizes_round_trip(model: str, root: Path, tmp_path: Path) -> None:
    sizes = {"empty": 0, "one": 1, "buffer": BUFFER, "buffer-plus-one": BUFFER + 1}
    rng = random.Random(6)
    local = {name: rng.randbytes(size) for name, size in sizes.items()}
    with files_service(root, model, allow_upload=True) as service:
        host, port = service.address
        for name, data in local.items():
            src = tmp_path / f"{name}.src"
            src.write_bytes(data)
            result = upload(host, port, str(src), name)
            assert (result.size, result.digest, result.offset) == (len(data), sha(data), 0)
            assert (root / name).read_bytes() == data
        assert list_files(host, port) == sorted((Entry(len(d), n) for n, d in local.items()), key=lambda e: e.name)
        for name, data in local.items():
            out = tmp_path / f"{name}.out"
            result = download(host, port, name, str(out))
            assert out.read_bytes() == data and result.digest == sha(data)
            assert not Path(str(out) + ".part").exists()
    assert no_partials(root)


def test_path_traversal_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "inside.txt").write_text("ok")
    (root / "link-out").symlink_to(outside / "secret")
    (root / "dir-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "inside.txt")
    digest = sha(b"x")
    with files_service(root, allow_upload=True) as service:
        for wire_name in (b"../outside/secret", b"%2e%2e/outside/secret", b"/etc/passwd", b"%2Fetc%2Fpasswd",
                          b"a/../../outside/secret", b"link-out", b"dir-out/secret", b"..", b"%2e%2e",
                          RESERVED.encode() + b"/x"):
            reply = raw_exchange(service.address, b"FX1 GET " + wire_name + b" 0\n")
            assert reply.startswith(b"ERR 403 ") and reply.endswith(b"\n") and reply.count(b"\n") == 1, wire_name
            reply = raw_exchange(service.address, b"FX1 PUT " + wire_name + b" 1 " + digest.encode() + b"\nx")
            assert reply.startswith(b"ERR 403 "), wire_name
        # a symlink that stays inside the root is fine
        assert raw_exchange(service.address, b"FX1 GET link-in 0\n").endswith(b"\nok")
        names = [e.name for e in list_files(*service.address)]
        assert "inside.txt" in names and "link-in" in names
        assert "link-out" not in names and not any(n.startswith("dir-out") for n in names)
    assert (outside / "secret").read_text() == "secret" and sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_malformed_requests_get_one_error_line_and_the_daemon_keeps_serving(root: Path) -> None:
    (root / "f").write_bytes(b"data")
    with files_service(root) as service:
        assert raw_exchange(service.address, b"GET f\n").startswith(b"ERR 400 ")
        assert raw_exchange(service.address, b"FX1 GET f 01\n").startswith(b"ERR 400 ")
        assert raw_exchange(service.address, b"X" * 10000).startswith(b"ERR 400 header longer")
        assert raw_exchange(service.address, b"FX1 GET f 5\n").startswith(b"ERR 416 ")
        assert raw_exchange(service.address, b"FX1 GET nope 0\n").startswith(b"ERR 404 ")
        assert raw_exchange(service.address, b"FX1 GET f 2\n") == b"FILE 4 " + sha(b"data").encode() + b"\nta"


def test_upload_disabled_by_default(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    with files_service(root) as service:
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "up")
        assert info.value.status == 403 and "disabled" in str(info.value)
    assert not (root / "up").exists() and no_partials(root)


def test_overwrite_needs_allow_overwrite(root: Path, tmp_path: Path) -> None:
    (root / "f").write_bytes(b"old")
    src = tmp_path / "src"
    src.write_bytes(b"new contents")
    with files_service(root, allow_upload=True) as service:
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "f")
        assert info.value.status == 409
    assert (root / "f").read_bytes() == b"old"
    with files_service(root, allow_upload=True, allow_overwrite=True) as service:
        upload(*service.address, str(src), "f")
    assert (root / "f").read_bytes() == b"new contents" and no_partials(root)


def test_size_cap_and_free_space_are_checked_before_any_byte(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x" * 1000)
    with files_service(root, allow_upload=True, max_size=999) as service:
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "big")
        assert info.value.status == 413
    vfs = os.statvfs(root)
    # a "size-capped directory": demand more free space than the file system can ever have
    with files_service(root, allow_upload=True, min_free=vfs.f_blocks * vfs.f_frsize) as service:
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "big")
        assert info.value.status == 507 and "insufficient storage" in str(info.value)
    assert not (root / "big").exists() and no_partials(root)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=10, check=True)


def test_disk_full_gives_a_clear_error_and_no_file(tiny_fs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = random.Random(1).randbytes(3 << 20)
    src.write_bytes(data)
    with files_service(tiny_fs, allow_upload=True, min_free=0) as service:
        # refused up front: statvfs says 2 MiB
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "big")
        assert info.value.status == 507
        # accepted (1.5 MiB fits), then the disk fills up before the body arrives: ENOSPC
        body = data[: 1536 << 10]
        with connect(service.address) as sock:
            sock.sendall(PutRequest("fits", len(body), sha(body)).encode())
            assert sock.recv(100) == b"READY 0\n"
            (tiny_fs / "filler").write_bytes(b"\0" * (1 << 20))
            sock.sendall(body)
            reply = sock.recv(200)
        assert reply.startswith(b"ERR 507 insufficient storage")
    assert not (tiny_fs / "big").exists() and not (tiny_fs / "fits").exists() and no_partials(tiny_fs)


def test_disk_full_mid_body_reaches_the_real_client(tiny_fs: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from inetkit.services.files import FilesService

    # no free-space check: the upload starts and the disk fills up under it
    monkeypatch.setattr(FilesService, "_check_space", lambda self, need: None)
    src = tmp_path / "src"
    src.write_bytes(random.Random(8).randbytes(16 << 20))
    with files_service(tiny_fs, allow_upload=True, min_free=0) as service:
        with pytest.raises(TransferError) as info:
            upload(*service.address, str(src), "big")
    assert info.value.status == 507 and "insufficient storage" in str(info.value)
    assert not (tiny_fs / "big").exists() and no_partials(tiny_fs)


def test_bad_digest_is_refused_and_nothing_is_kept(root: Path) -> None:
    with files_service(root, allow_upload=True) as service:
        reply = raw_exchange(service.address, PutRequest("f", 4, sha(b"good")).encode() + b"evil")
    assert reply.startswith(b"READY 0\nERR 422 SHA-256 mismatch")
    assert not (root / "f").exists() and no_partials(root)


@pytest.mark.parametrize("model", ["async", "fork"])
def test_disconnect_mid_upload_leaves_only_a_resumable_partial(model: str, root: Path, tmp_path: Path) -> None:
    data = random.Random(2).randbytes(300_000)
    src = tmp_path / "src"
    src.write_bytes(data)
    with files_service(root, model, allow_upload=True) as service:
        with connect(service.address) as sock:
            sock.sendall(PutRequest("f", len(data), sha(data)).encode())
            assert sock.recv(100) == b"READY 0\n"
            sock.sendall(data[:123_456])
        # the client died: no file under the name, not listed, not served
        result = upload(*service.address, str(src), "f")  # waits out 423 until the server noticed
        assert result.offset == 123_456
    assert (root / "f").read_bytes() == data and no_partials(root)


def test_partial_is_invisible(root: Path) -> None:
    data = b"y" * 5000
    with files_service(root, allow_upload=True) as service:
        with connect(service.address) as sock:
            sock.sendall(PutRequest("g", len(data), sha(data)).encode())
            assert sock.recv(100) == b"READY 0\n"
            sock.sendall(data[:100])
        assert list_files(*service.address) == []
        assert raw_exchange(service.address, b"FX1 GET g 0\n").startswith(b"ERR 404 ")
    assert not (root / "g").exists()


@pytest.mark.parametrize("model", ["async", "thread"])
def test_download_resumes_after_a_cut_at_a_random_offset(model: str, root: Path, tmp_path: Path) -> None:
    rng = random.Random(model)
    data = rng.randbytes(3 << 20)
    (root / "f").write_bytes(data)
    cut = rng.randrange(1000, len(data))
    out = tmp_path / "out"
    with files_service(root, model) as service, CutProxy(service.address, cut, reset=False) as proxy:
        with pytest.raises(TransferError) as info:
            download(*proxy.address, "f", str(out))
        assert "--resume" in str(info.value) and not out.exists()
        kept = Path(str(out) + ".part").stat().st_size
        # the default GET verifies SHA-256 only: FILE carries that one digest
        header = len(b"FILE %d %s\n" % (len(data), sha(data).encode()))
        assert kept == cut - header  # every byte that got through is kept
        result = download(*proxy.address, "f", str(out), resume=True)
        assert result.offset == kept and proxy.cut_count == 1
    assert out.read_bytes() == data


def test_upload_resumes_after_a_cut_at_a_random_offset(root: Path, tmp_path: Path) -> None:
    rng = random.Random(7)
    data = rng.randbytes(3 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    cut = rng.randrange(1000, len(data))
    with files_service(root, allow_upload=True) as service, CutProxy(service.address, cut, direction="up", reset=False) as proxy:
        with pytest.raises(TransferError):
            upload(*proxy.address, str(src), "f")
        assert not (root / "f").exists()
        result = upload(*proxy.address, str(src), "f")
        # the proxy ended the first attempt with FIN: the server stored every
        # body byte that got through before it
        assert result.offset == cut - len(PutRequest("f", len(data), sha(data)).encode())
    assert (root / "f").read_bytes() == data and no_partials(root)


@pytest.mark.parametrize("check", ["sha256", "blake3"])
def test_resume_with_a_corrupted_local_part_is_detected(check: str, root: Path, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(100_000)
    (root / "f").write_bytes(data)
    out = tmp_path / "out"
    Path(str(out) + ".part").write_bytes(b"\xff" * 1000)  # not a prefix of the file
    with files_service(root) as service, pytest.raises(TransferError) as info:
        download(*service.address, "f", str(out), resume=True, check=check)
    label = {"sha256": "SHA-256", "blake3": "BLAKE3"}[check]
    assert info.value.kind == "integrity" and f"{label} mismatch" in str(info.value)
    assert not out.exists() and not Path(str(out) + ".part").exists()


@pytest.mark.parametrize("model", ["async", "thread", "fork"])
def test_concurrent_downloads_and_uploads(model: str, root: Path, tmp_path: Path) -> None:
    data = random.Random(4).randbytes(2 << 20)
    (root / "shared").write_bytes(data)
    uploads = {f"up{i}": random.Random(i).randbytes(500_000 + i) for i in range(4)}
    for name, payload in uploads.items():
        (tmp_path / name).write_bytes(payload)
    errors: list[BaseException] = []
    with files_service(root, model, allow_upload=True) as service:
        host, port = service.address

        def get(i: int) -> None:
            try:
                out = tmp_path / f"down{i}"
                download(host, port, "shared", str(out))
                assert out.read_bytes() == data
            except BaseException as exc:
                errors.append(exc)

        def put(name: str) -> None:
            try:
                upload(host, port, str(tmp_path / name), name)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=get, args=(i,)) for i in range(6)]
        threads += [threading.Thread(target=put, args=(name,)) for name in uploads]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for name, payload in uploads.items():
        assert (root / name).read_bytes() == payload


@pytest.mark.slow
def test_one_gib_sparse_file(root: Path, tmp_path: Path) -> None:
    size = 1 << 30
    with open(root / "sparse", "wb") as f:
        f.truncate(size)  # a hole: nothing is stored
    # the copy is real bytes: into tmpfs when there is room, so the disk's
    # write-back does not slow this (or the next) test down
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 2 * size else tmp_path
    out = base / f"inetkit-test-sparse-{os.getpid()}.out"
    try:
        with files_service(root) as service:
            result = download(*service.address, "sparse", str(out), timeout=30)
        assert out.stat().st_size == size
        # SHA-256 of 2**30 zero bytes (a known answer, computed once with hashlib)
        assert result.digest == "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
        with open(out, "rb") as copy:  # the copy holds zeros: spot-check a few places
            for offset in (0, size // 3, size - 4096):
                copy.seek(offset)
                assert copy.read(4096) == bytes(4096)
    finally:
        out.unlink(missing_ok=True)


def test_an_uploaded_file_is_served_without_hashing_it_again(root: Path, tmp_path: Path) -> None:
    data = b"cached" * 1000
    src = tmp_path / "src"
    src.write_bytes(data)
    with files_service(root, allow_upload=True) as service:
        upload(*service.address, str(src), "c")
        files = service.runtime.service
        st = os.stat(root / "c")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        assert files._digests.get(key) == sha(data)
        assert download(*service.address, "c", str(tmp_path / "out")).digest == sha(data)


@pytest.mark.parametrize("start", [0, 1, 4095, 4097, 20_000])
def test_file_hasher_follows_a_writer(start: int, tmp_path: Path) -> None:
    from inetkit.io.filehash import FileHasher

    rng = random.Random(start)
    data = rng.randbytes(50_000)
    path = tmp_path / "f"
    path.write_bytes(data[:start])
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        hasher = FileHasher(fd, start, hashlib.sha256(data[:start]), window=8192)
        pos = start
        while pos < len(data):
            step = rng.randrange(1, 9000)
            os.write(fd, data[pos : pos + step])
            pos = min(len(data), pos + step)
            hasher.advance(pos)
        assert hasher.finish() == sha(data)
        cancelled = FileHasher(fd, 0, window=8192)
        cancelled.advance(len(data))
        cancelled.cancel()
        assert not cancelled.thread.is_alive()
    finally:
        os.close(fd)


def test_download_falls_back_when_the_file_system_cannot_splice(monkeypatch: pytest.MonkeyPatch, root: Path,
                                                                 tmp_path: Path) -> None:
    import errno
    import stat

    data = random.Random(9).randbytes(3 << 20)
    (root / "f").write_bytes(data)
    real_splice = os.splice
    refused = []

    def splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if stat.S_ISREG(os.fstat(dst).st_mode):  # pipe -> file: "not supported here"
            refused.append(dst)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_splice(src, dst, count, *args, **kwargs)

    monkeypatch.setattr(os, "splice", splice)
    with files_service(root) as service:
        download(*service.address, "f", str(tmp_path / "out"))
    assert len(refused) == 1 and (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("model", ["async", "thread"])
def test_a_slow_hash_sends_wait_lines_instead_of_going_silent(model: str, monkeypatch: pytest.MonkeyPatch,
                                                              root: Path, tmp_path: Path) -> None:
    import time

    import inetkit.services.files as files_module

    data = b"slowly hashed" * 1000
    (root / "f").write_bytes(data)
    (root / "g").write_bytes(data + b"!")
    real_hash_fd = files_module.hash_fd

    def slow_hash_fd(fd: int, names: list[str], length: int | None = None,
                     progress: list[int] | None = None) -> list[str]:
        time.sleep(1.0)  # a big file on a busy disk, in miniature
        return real_hash_fd(fd, names, length, progress)

    monkeypatch.setattr(files_module, "hash_fd", slow_hash_fd)
    monkeypatch.setattr(files_module.FilesService, "wait_interval", 0.1)
    with files_service(root, model) as service:
        # a client whose timeout is shorter than the hash still gets the file
        result = download(*service.address, "f", str(tmp_path / "out"), timeout=0.5)
        reply = raw_exchange(service.address, b"FX1 GET g 0\n")
    lines = reply.split(b"\n")
    assert lines[0].startswith(b"WAIT ") and any(line.startswith(b"FILE ") for line in lines)
    assert result.digest == sha(data) and (tmp_path / "out").read_bytes() == data


def test_an_unusable_root_is_a_config_error(tmp_path: Path) -> None:
    from inetkit.errors import ConfigError
    from inetkit.services.files import FilesService

    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match="option 'root'"):
        FilesService({"root": str(tmp_path / "file")})
    with pytest.raises(ConfigError, match="option 'root'"):
        FilesService({"root": str(tmp_path / "file" / "below")})
    created = tmp_path / "new" / "root"
    FilesService({"root": str(created)})
    assert created.is_dir()


# -- the digest a download verifies (BLAKE3 by default, SHA-256 on request) -----------------


@pytest.mark.parametrize("model", ["async", "thread"])
def test_get_asking_for_blake3_announces_both_digests_and_caches_them(model: str, root: Path, tmp_path: Path) -> None:
    data = random.Random(21).randbytes(300_000)
    (root / "f").write_bytes(data)
    with files_service(root, model) as service:
        reply = raw_exchange(service.address, b"FX1 GET f 0 blake3\n", limit=1 << 20)
        header, body = reply.split(b"\n", 1)
        assert header == b"FILE %d %s %s" % (len(data), sha(data).encode(), b3(data).encode()) and body == data
        files = service.runtime.service
        st = os.stat(root / "f")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        assert files._digests.get(key) == sha(data) and files._blake3.get(key) == b3(data)
        plain = raw_exchange(service.address, b"FX1 GET f 0\n", limit=1 << 20)
        assert plain.split(b"\n", 1)[0] == b"FILE %d %s" % (len(data), sha(data).encode())


@pytest.mark.parametrize("check", ["auto", "sha256", "blake3"])
def test_download_reports_the_digest_it_verified(check: str, root: Path, tmp_path: Path) -> None:
    data = random.Random(22).randbytes(200_000)
    (root / "f").write_bytes(data)
    with files_service(root) as service:
        result = download(*service.address, "f", str(tmp_path / "out"), check=check)
    assert (tmp_path / "out").read_bytes() == data and result.digest == sha(data)
    used = "blake3" if check == "auto" else check
    assert result.check == used and result.checked == (b3(data) if used == "blake3" else sha(data))


def test_a_server_without_blake3_refuses_it_and_auto_falls_back_to_sha256(monkeypatch: pytest.MonkeyPatch,
                                                                           root: Path, tmp_path: Path) -> None:
    import inetkit.services.files as files_module

    monkeypatch.setattr(files_module, "blake3_available", lambda: False)
    data = random.Random(23).randbytes(100_000)
    (root / "f").write_bytes(data)
    with files_service(root) as service:
        reply = raw_exchange(service.address, b"FX1 GET f 0 blake3\n")
        assert reply.startswith(b"ERR 400 ")
        result = download(*service.address, "f", str(tmp_path / "out"))
        assert (result.check, result.checked) == ("sha256", sha(data)) and (tmp_path / "out").read_bytes() == data
        with pytest.raises(TransferError) as info:
            download(*service.address, "f", str(tmp_path / "other"), check="blake3")
    assert info.value.kind == "refused" and info.value.status == 400 and "BLAKE3" in str(info.value)
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.part").exists()


def test_a_client_without_blake3_uses_sha256(monkeypatch: pytest.MonkeyPatch, root: Path, tmp_path: Path) -> None:
    import inetkit.clients.files as client_module

    monkeypatch.setattr(client_module, "blake3_available", lambda: False)
    data = b"no blake3 here" * 100
    (root / "f").write_bytes(data)
    with files_service(root) as service:
        result = download(*service.address, "f", str(tmp_path / "out"))
        assert (result.check, result.checked) == ("sha256", sha(data))
        with pytest.raises(TransferError) as info:
            download(*service.address, "f", str(tmp_path / "out2"), check="blake3")
    assert info.value.kind == "local" and "pip install blake3" in str(info.value)


def test_blake3_verification_to_a_pipe(root: Path) -> None:
    """Outputs that are not regular files (``-o -``: a pipe) take the copying
    path (recv_into + write, hashed on a helper thread), BLAKE3 included."""
    import inetkit.clients.files as client_module

    data = random.Random(24).randbytes(3 * BUFFER + 17)
    (root / "f").write_bytes(data)
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with files_service(root) as service, connect(service.address, timeout=10) as sock:
            header, checked = client_module._download_on(sock, "f", write_fd, 0, None, True, "blake3")
    finally:
        os.close(write_fd)
        reader.join(10)
    assert received == [data] and (header.blake3, checked) == (b3(data), b3(data))


def test_hash_fd_computes_several_digests_in_one_pass(tmp_path: Path) -> None:
    from inetkit.io.filehash import CHUNK, hash_fd

    data = random.Random(25).randbytes(2 * CHUNK + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        progress = [0]
        assert hash_fd(fd, ["sha256", "blake3"], None, progress) == [sha(data), b3(data)]
        assert progress == [len(data)]
        assert hash_fd(fd, ["blake3"], 1000) == [b3(data[:1000])]
    finally:
        os.close(fd)


def test_after_an_upload_a_blake3_get_hashes_only_the_missing_digest(monkeypatch: pytest.MonkeyPatch, root: Path,
                                                                      tmp_path: Path) -> None:
    import inetkit.services.files as files_module

    asked: list[list[str]] = []
    real_hash_fd = files_module.hash_fd

    def recording_hash_fd(fd: int, names: list[str], length: int | None = None,
                          progress: list[int] | None = None) -> list[str]:
        asked.append(list(names))
        return real_hash_fd(fd, names, length, progress)

    monkeypatch.setattr(files_module, "hash_fd", recording_hash_fd)
    data = random.Random(26).randbytes(150_000)
    (tmp_path / "src").write_bytes(data)
    with files_service(root, allow_upload=True) as service:
        upload(*service.address, str(tmp_path / "src"), "up")  # the server remembers the verified SHA-256
        first = download(*service.address, "up", str(tmp_path / "a"), check="blake3")
        second = download(*service.address, "up", str(tmp_path / "b"), check="blake3")
    assert asked == [["blake3"]]  # once, and only the digest it did not know
    assert first.checked == second.checked == b3(data) and (tmp_path / "b").read_bytes() == data
