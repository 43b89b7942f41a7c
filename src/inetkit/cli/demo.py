"""``inetkit demo``: every scenario of the socket chapter, end to end, against a live daemon.

It starts ``inetkit serve`` on a config of its own with every seed service on
a free port (port 0), then plays the seed's clients against it in order
(seed 000 §12-2-1 iterative, §12-2-2 fork, §12-2-3 exec "han", §12-2-4
exec-fd "bit", §12-3 UDP; 002 hello over TCP and UDP; 004 recvn echo) and
prints a transcript like the seeds' "demo" sections: the daemon's log lines
(``server |``) interleaved with what each client prints (``client |``), plus
the process tree while a fork child or an exec'd program is alive (the seed
tells the reader to run ``ps -ef`` for this).  It stops the daemon at the end.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inetkit.cli.common import EXIT_FAILURE, fail

#: how long to wait for a server log line that should follow a client step
LOG_WAIT = 3.0
READY_WAIT = 15.0

DEMO_CONFIG = """\
# written by `inetkit demo`: the chapter's services, each on a free port
[daemon]
bind = "127.0.0.1"
log_format = "plain"
grace = 3

[services.greeting]
port = 0
proto = "tcp"
model = "iterative"
[services.greeting.options]
message = "welcome to network server!!!"

[services.greeting-fork]
port = 0
proto = "tcp"
handler = "greeting"
model = "fork"
[services.greeting-fork.options]
message = "welcome to server"

[services.han]
port = 0
proto = "tcp"
model = "exec"
program = ["{python}", "-m", "inetkit.examples.han", "--linger", "1"]

[services.bit]
port = 0
proto = "tcp"
model = "exec-fd"
program = ["{python}", "-m", "inetkit.examples.bit", "{fd}"]

[services.udp-hello]
port = 0
proto = "udp"
model = "datagram"

[services.hello]
port = 0
proto = ["tcp", "udp"]

[services.seed-echo]
port = 0
proto = "tcp"
handler = "echo"
model = "async"
"""

_ROW = re.compile(r"^\s+(\S+)\s+(tcp|udp)\s+\[?([^\]\s]*?)\]?:(\d+)\s+(\S+)")
#: "2026-01-01 12:00:00,123 inetkit[42] INFO text" -> "inetkit[42] text"
_LOG = re.compile(r"^\S+ \S+ (inetkit\[\d+\]) [A-Z]+ (.*)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Walk through every scenario of the socket chapter (seed 000 §12-2-1..§12-3, 002 basics, 004 echo) "
        "against a daemon started on free ports; prints server log lines interleaved with client output "
        "and the process tree for the fork and exec models. Takes a few seconds."
    )
    from inetkit.cli.seedcommon import positive_seconds

    parser.add_argument("--timeout", type=positive_seconds, default=5.0, help="seconds per client step (default 5)")


class Daemon:
    """``inetkit serve -c CONFIG`` as a child; its log lines arrive on a queue."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "INETKIT_LOG_FORMAT": "plain", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inetkit.cli.main", "serve", "--strict", "--no-control", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.ports: dict[tuple[str, str], tuple[str, int, str]] = {}
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._readers:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = _ROW.match(line)
            if m and "FAILED" not in line:
                self.ports[(m.group(1), m.group(2))] = (m.group(3), int(m.group(4)), m.group(5))
            if line.startswith("inetkit: ready"):
                self._ready.set()
        self._ready.set()  # EOF: the daemon is gone; wait_ready() tells the difference

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self) -> bool:
        return self._ready.wait(READY_WAIT) and self.proc.poll() is None and bool(self.ports)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._readers:
            thread.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Transcript:
    """Prints client output and the daemon's log lines in arrival order."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.failures = 0
        #: every server line printed so far, so an expected line that came early still counts
        self.history: list[str] = []

    def mark(self) -> int:
        """A position in the server lines; ``expect(..., since=mark)`` looks from there."""
        return len(self.history)

    def expect(self, pattern: str, since: int, timeout: float = LOG_WAIT) -> bool:
        """True once a server line matching ``pattern`` was printed after ``since`` (bounded wait)."""
        regex = re.compile(pattern)
        if any(regex.search(line) for line in self.history[since:]):
            return True
        return self.server_lines(pattern, timeout)

    def header(self, text: str) -> None:
        print(text, flush=True)

    def client(self, text: str) -> None:
        self.server_lines()  # whatever the server said first comes first
        print(f"  client | {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def server_lines(self, until: str | None = None, timeout: float = LOG_WAIT) -> bool:
        """Print queued server lines; with ``until``, wait (bounded) for a line matching it."""
        pattern = re.compile(until) if until else None
        deadline = time.monotonic() + (timeout if pattern else 0.0)
        while True:
            try:
                line = self.daemon.lines.get(timeout=max(0.0, deadline - time.monotonic()) if pattern else 0)
            except queue.Empty:
                return pattern is None
            m = _LOG.match(line)
            shown = f"{m.group(1)} {m.group(2)}" if m else line
            self.history.append(line)
            print(f"  server | {shown}", flush=True)
            if pattern is not None and pattern.search(line):
                return True

    def failed(self, message: str) -> None:
        self.failures += 1
        print(f"  FAILED | {message}", flush=True)


def process_tree(root: int) -> list[str]:
    """``ps -ef``-like lines (PID, PPID, command) for ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        parents[int(entry)] = int(fields[1])
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    lines = [f"{'PID':>7} {'PPID':>7}  CMD"]

    def walk(pid: int, depth: int) -> None:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        argv = ["python" if a == sys.executable else a for a in argv]
        command = " ".join(argv)
        command = re.sub(r"--spec \{.*\}", "--spec {...}", command)
        if len(command) > 90:
            command = command[:87] + "..."
        lines.append(f"{pid:>7} {parents.get(pid, 0):>7}  {'  ' * depth}{command}")
        for child in sorted(children.get(pid, [])):
            walk(child, depth + 1)

    walk(root, 0)
    return lines


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="inetkit-demo-") as tmp:
        config = Path(tmp) / "demo.toml"
        config.write_text(DEMO_CONFIG)
        daemon = Daemon(config)
        try:
            if not daemon.wait_ready():
                errors = []
                while not daemon.lines.empty():
                    errors.append(daemon.lines.get())
                return fail("the demo daemon did not start: " + (" | ".join(errors[-5:]) or "no output"), EXIT_FAILURE)
            print("inetkit demo: the socket chapter's scenarios against a live daemon")
            print(f"daemon: inetkit serve -c demo.toml (pid {daemon.proc.pid}), every service on a free port:")
            for (name, proto), (host, port, model) in daemon.ports.items():
                print(f"  {name:<14} {proto}  {host}:{port:<6} {model}")
            transcript = Transcript(daemon)
            for scenario in SCENARIOS:
                print()
                scenario(transcript, daemon, args.timeout)
            transcript.server_lines()
        finally:
            daemon.stop()
    print()
    elapsed = time.monotonic() - started
    if transcript.failures:
        return fail(f"demo finished with {transcript.failures} failed step(s) in {elapsed:.1f}s", EXIT_FAILURE)
    print(f"inetkit demo: every scenario done in {elapsed:.1f}s; the daemon was stopped.")
    return 0


# -- the scenarios -------------------------------------------------------------------


def _address(daemon: Daemon, name: str, proto: str = "tcp") -> tuple[str, int]:
    host, port, _ = daemon.ports[(name, proto)]
    return host, port


def _tree(t: Transcript, daemon: Daemon, why: str) -> None:
    t.server_lines()
    t.note(f"$ ps -ef  ({why}; the daemon and its descendants)")
    for line in process_tree(daemon.proc.pid):
        t.note(f"  ps | {line}")


def _greet(t: Transcript, daemon: Daemon, name: str, timeout: float, *, arrow: bool = False, until_eof: bool = False,
           text: str | None = None, on_welcome: Callable[[], None] | None = None, done: str = r"") -> None:
    from inetkit.clients.greeting import greet
    from inetkit.clients.simple import ClientError
    from inetkit.proto.greeting import CMessage, padded_message

    host, port = _address(daemon, name)
    start = t.mark()
    flag = " --seed 12-2-3" if until_eof else " --seed 12-2-4" if arrow else ""
    t.note(f"$ inetkit greet {host} {port}{flag}")
    if arrow:
        t.client("==> create socket")

    def welcome(message: CMessage) -> None:
        t.client(f"==>from server : {message.decoded()}" if arrow else f"** From server : {message.decoded()}")
        if on_welcome is not None:
            on_welcome()

    try:
        greet((host, port), padded_message(text) if text else None, until_eof=until_eof, timeout=timeout,
              on_connect=(lambda: t.client("==> connect server")) if arrow else None, on_welcome=welcome)
    except ClientError as exc:
        t.failed(str(exc))
        return
    if done and not t.expect(done, start):
        t.failed(f"no server log line matching {done!r} within {LOG_WAIT}s")


def iterative(t: Transcript, daemon: Daemon, timeout: float) -> None:
    t.header("== seed 000 §12-2-1: the iterative server (greeting, model iterative) ==")
    t.header("   The server itself answers each client, one at a time; run the client twice.")
    for _ in range(2):
        _greet(t, daemon, "greeting", timeout, text="I want a HTTP service", done=r"greeting \S+ iterative pid=")


def forking(t: Transcript, daemon: Daemon, timeout: float) -> None:
    t.header("== seed 000 §12-2-2: the concurrent server (greeting-fork, model fork) ==")
    t.header("   A child process per client; the tree below is taken while the client is connected.")
    _greet(t, daemon, "greeting-fork", timeout, text="I want a HTTP service",
           on_welcome=lambda: _fork_tree(t, daemon),
           done=r"greeting-fork \S+ fork pid=")


def _fork_tree(t: Transcript, daemon: Daemon) -> None:
    t.expect(r"greeting-fork \S+: send a message to client", 0, 1.0)
    _tree(t, daemon, "the fork worker and the child serving this client")


def exec_han(t: Transcript, daemon: Daemon, timeout: float) -> None:
    t.header("== seed 000 §12-2-3: fork+exec a program on stdin/stdout (han, model exec) ==")
    start = t.mark()
    _greet(t, daemon, "han", timeout, arrow=True, until_eof=True)
    _tree(t, daemon, "han lingers 1 s after closing the connection, like the seed's sleep(5)")
    if not t.expect(r"han \S+ exec pid=", start):
        t.failed("no log line for the han connection")


def exec_bit(t: Transcript, daemon: Daemon, timeout: float) -> None:
    t.header("== seed 000 §12-2-4: fork+exec a program told the socket's fd in argv (bit, model exec-fd) ==")
    _greet(t, daemon, "bit", timeout, arrow=True, text="I want a Telnet service",
           on_welcome=lambda: _tree(t, daemon, "bit, with the descriptor number as its argument"),
           done=r"bit \S+ exec-fd pid=")


def udp_hello(t: Transcript, daemon: Daemon, timeout: float) -> None:
    from inetkit.clients.simple import ClientError
    from inetkit.clients.udp import udp_exchange
    from inetkit.proto.hello import datagram_text

    t.header("== seed 000 §12-3: UDP request/reply (udp-hello, model datagram) ==")
    host, port = _address(daemon, "udp-hello", "udp")
    t.note(f"$ inetkit udp {host} {port}")
    start = t.mark()
    try:
        reply, _ = udp_exchange((host, port), b"I am a client\x00", timeout=min(timeout, 1.0), retries=3)
    except ClientError as exc:
        t.failed(str(exc))
        return
    if not t.expect(r"From client: I am a client", start):
        t.failed("the server did not log the datagram")
    t.client(f"** From Server : {datagram_text(reply)}")


def hello(t: Transcript, daemon: Daemon, timeout: float) -> None:
    from inetkit.clients.hello import hello_tcp, hello_udp
    from inetkit.clients.simple import ClientError
    from inetkit.proto.hello import message_text

    t.header("== seed 002 basics: hello over TCP and over UDP (hello, models async and datagram) ==")
    for proto in ("tcp", "udp"):
        host, port = _address(daemon, "hello", proto)
        t.note(f"$ inetkit hello {host} {port}{' --udp' if proto == 'udp' else ''}")
        start = t.mark()
        try:
            if proto == "tcp":
                reply = hello_tcp((host, port), timeout=timeout, on_sent=lambda: t.client("Hello message sent"))
            else:
                t.client("Hello message sent")
                reply = hello_udp((host, port), timeout=min(timeout, 1.0), retries=3)
        except ClientError as exc:
            t.failed(str(exc))
            continue
        if not t.expect(r"Message from client: Hello from client", start):
            t.failed("the server did not log the message")
        t.client(f"Message from server: {message_text(reply)}")


def echo(t: Transcript, daemon: Daemon, timeout: float) -> None:
    from inetkit.clients.echo import EchoClient
    from inetkit.clients.simple import ClientError

    t.header("== lecture 004: the echo client with recvn (seed-echo, model async) ==")
    host, port = _address(daemon, "seed-echo")
    lines = ["hello, socket", "recvn reads back exactly what was sent"]
    nl = chr(92) + "n"
    t.note(f"$ printf '{nl.join(lines)}{nl}{nl}' | inetkit echo {host} {port}")
    start = t.mark()
    try:
        with EchoClient((host, port), timeout) as client:
            for line in lines:
                data = line.encode()
                t.client(f"[TCP client] {len(data)} bytes sent")
                reply = client.exchange(data)
                t.client(f"[TCP client] {len(reply)} bytes received")
                t.client(f"[received data] {reply.decode('utf-8', 'replace')}")
    except ClientError as exc:
        t.failed(str(exc))
        return
    if not t.expect(r"seed-echo \S+ async pid=", start):
        t.failed("no log line for the echo connection")


SCENARIOS = (iterative, forking, exec_han, exec_bit, udp_hello, hello, echo)
