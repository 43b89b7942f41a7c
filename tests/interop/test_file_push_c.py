"""Lecture 004's file exchange against C programs that restate the seed's
file client and file server (tests/interop/file_c/, compiled with gcc).

- the seed's C client against inetkit's ``file-push``;
- ``inetkit push-get`` against the seed's C server;
both byte-identical for 0 bytes, 1 byte, exactly one C buffer (64 KiB) and a
larger random file, with the "Thank you\\n" arriving at the server.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inetkit.testing.logs import LogLines, captured_log
from inetkit.testing.running import running_service

pytestmark = pytest.mark.interop

SOURCES = Path(__file__).parent / "file_c"
SIZES = [0, 1, 65536, (1 << 20) + 7]


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed (apt-get install gcc)")
    out = tmp_path_factory.mktemp("file_c")
    built = {}
    for name in ("file_server", "file_client"):
        exe = out / name
        subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(SOURCES / f"{name}.c")], check=True,
                       capture_output=True, timeout=60)
        built[name] = exe
    return built


@pytest.fixture
def push_log() -> Iterator[LogLines]:
    with captured_log("inetkit.file-push") as lines:
        yield lines


@pytest.mark.parametrize("model", ["async", "fork"])
def test_seed_c_client_against_file_push(model: str, programs: dict[str, Path], tmp_path: Path,
                                         push_log: LogLines) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"")
    with running_service("file-push", model=model, options={"path": str(src)}) as service:
        host, port = service.address
        for size in SIZES:
            data = random.Random(size).randbytes(size)
            src.write_bytes(data)
            out = tmp_path / f"out{size}"
            done = subprocess.run([str(programs["file_client"]), host, str(port), str(out)],
                                  capture_output=True, timeout=20)
            assert done.returncode == 0, done.stderr
            assert out.read_bytes() == data
    if model == "async":
        replies = [m for m in push_log.lines if "reply 'Thank you'" in m]
        assert len(replies) == len(SIZES), push_log.lines


def test_push_get_against_the_seed_c_server(programs: dict[str, Path], tmp_path: Path) -> None:
    for size in SIZES:
        data = random.Random(size).randbytes(size)
        src = tmp_path / f"src{size}"
        src.write_bytes(data)
        out = tmp_path / f"out{size}"
        server = subprocess.Popen([str(programs["file_server"]), "0", str(src)], stdout=subprocess.PIPE)
        try:
            assert server.stdout is not None
            first = server.stdout.readline()  # "PORT n": listening (readiness, not a sleep)
            assert first.startswith(b"PORT "), first
            port = first.split()[1].decode()
            client = subprocess.run([sys.executable, "-m", "inetkit.cli.main", "push-get", "127.0.0.1", port,
                                     "-o", str(out)], capture_output=True, timeout=30)
            assert client.returncode == 0, client.stderr
            reply = server.stdout.read()
            assert server.wait(10) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(5)
            if server.stdout is not None:
                server.stdout.close()
        assert reply == b"Thank you\n"
        assert out.read_bytes() == data
