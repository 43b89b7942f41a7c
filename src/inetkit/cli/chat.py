"""``inetkit chat``: the chat client, and the seed's one-to-one chat.

    inetkit chat HOST PORT [--nick NAME] [--room ROOM]   a client of the chat service
    inetkit chat HOST PORT --direct                      dial a one-to-one peer (the seed's client)
    inetkit chat --listen PORT [--bind ADDR]             wait for one peer (the seed's server)

Full duplex in every mode: incoming lines appear while you type.  On a
terminal the input line is a prompt_toolkit prompt (history with the arrow
keys; ``patch_stdout`` prints incoming lines above it without breaking what
you are typing).  Piped, stdin lines are sent as they come and incoming
lines are printed (flushed) as they arrive, so the command can be scripted;
at stdin EOF it half-closes and prints what still arrives until the peer
closes.  ``/quit`` (room mode) or a line starting with ``exit`` ends the chat.

Exit status: 0 when the chat ended normally (quit, exit, peer closed),
69 when the peer cannot be reached or listened for, 1 on a connection error.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from inetkit.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", nargs="?", help="server or peer address (not with --listen)")
    parser.add_argument("port", nargs="?", type=_port, help="server or peer port")
    parser.add_argument("--nick", help="nickname to take on joining (room mode); else your first line is your nickname")
    parser.add_argument("--room", help="room to join after the nickname (room mode)")
    parser.add_argument("--direct", action="store_true", help="one-to-one: talk straight to a --listen peer or the seed's chat server")
    parser.add_argument("--listen", type=_port, metavar="PORT", help="one-to-one: wait for one peer on PORT (0: any free port)")
    parser.add_argument("--bind", default="127.0.0.1", help="address for --listen (default 127.0.0.1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait when connecting (default 10)")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 0-65535")
    return value


def run(args: argparse.Namespace) -> int:
    from inetkit.clients import chat as client

    if args.listen is not None:
        if args.host is not None or args.direct or args.nick or args.room:
            return fail("chat: --listen takes no HOST PORT, --direct, --nick or --room", EXIT_USAGE)
        try:
            listener = client.Listener(args.bind, args.listen)
        except OSError as exc:
            return fail(f"chat: cannot listen on {args.bind} port {args.listen}: {exc.strerror or exc}", EXIT_UNAVAILABLE)
        host, port = listener.address
        _status(f"listening on {host} {port}; waiting for one peer")
        sock = listener.accept()
        if sock is None:
            return fail("chat: stopped before a peer connected", EXIT_FAILURE)
        peer = sock.getpeername()
        _status(f"connected with {peer[0]}:{peer[1]}; a line starting with 'exit' ends the chat")
        direct = True
    else:
        if args.host is None or args.port is None:
            return fail("chat: give HOST PORT (or --listen PORT)", EXIT_USAGE)
        if args.direct and (args.nick or args.room):
            return fail("chat: --nick and --room are for the chat service, not --direct", EXIT_USAGE)
        try:
            sock = client.connect(args.host, args.port, args.timeout)
        except OSError as exc:
            return fail(f"chat: cannot connect to {args.host} port {args.port}: {exc.strerror or exc}", EXIT_UNAVAILABLE)
        direct = args.direct
    preamble = [] if direct else client.room_preamble(args.nick, args.room)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and not direct and not args.nick:
        _status("connected; your first line is your nickname (/help lists commands)")
    ui = _Terminal() if interactive else _Piped()
    chat = client.DuplexChat(sock, ui.show, direct=direct, on_done=ui.interrupt)
    try:
        chat.start()
        for line in preamble:
            chat.send_line(line)
        ui.run(chat, direct)
    finally:
        chat.close()
    if chat.error is not None and chat.reason.startswith(("connection error", "send failed")):
        return fail(f"chat: {chat.reason}", EXIT_FAILURE)
    if chat.reason:
        _status(f"chat ended: {chat.reason}")
    return EXIT_OK


def _status(text: str) -> None:
    print(f"inetkit chat: {text}", file=sys.stderr, flush=True)


def _ends_chat(text: str, direct: bool) -> bool:
    """Lines after which we stop reading input: the server closes after them
    (room mode) or the chat is over (direct mode)."""
    stripped = text.strip()
    return stripped.startswith("exit") or (not direct and stripped.split(" ", 1)[0].lower() in ("/quit", "/q"))


class _Piped:
    """stdin lines out, incoming lines to stdout, for scripts and tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def show(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def interrupt(self) -> None:
        pass  # the main thread waits on chat.done; the stdin reader is a daemon thread

    def run(self, chat: Any, direct: bool) -> None:
        import time

        from inetkit.clients.chat import QUIT_GRACE

        quit_at: list[float] = []

        def pump() -> None:
            for line in sys.stdin:
                text = line.rstrip("\r\n")
                if not chat.send_line(text):
                    return
                if _ends_chat(text, direct):
                    quit_at.append(time.monotonic())
                    break
            # stdin ended (or we quit): half-close so the peer sees EOF, keep printing
            chat.finish_sending()

        threading.Thread(target=pump, name="chat-stdin", daemon=True).start()
        while not chat.wait(0.25):
            if quit_at and time.monotonic() - quit_at[0] > QUIT_GRACE:
                return  # the server did not close after our /quit: stop anyway


class _Terminal:
    """prompt_toolkit input line; incoming lines print above it."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession

        self.session: Any = PromptSession()

    def show(self, text: str) -> None:
        print(text, flush=True)  # stdout is patched while the prompt runs: thread-safe

    def interrupt(self) -> None:
        app = self.session.app
        loop = getattr(app, "loop", None)
        if app.is_running and loop is not None:
            loop.call_soon_threadsafe(lambda: app.exit(exception=EOFError) if app.is_running else None)

    def _exit_if(self, done: bool) -> None:
        if done and self.session.app.is_running:
            self.session.app.exit(exception=EOFError)

    def run(self, chat: Any, direct: bool) -> None:
        from prompt_toolkit.patch_stdout import patch_stdout

        from inetkit.clients.chat import QUIT_GRACE

        with patch_stdout(raw=True):
            while not chat.done.is_set():
                try:
                    # pre_run closes the gap between our done check and the
                    # prompt starting (interrupt() cannot reach a prompt not yet running)
                    text = self.session.prompt("> ", pre_run=lambda: self._exit_if(chat.done.is_set()))
                except (EOFError, KeyboardInterrupt):
                    if not chat.done.is_set():
                        chat.send_line("exit" if direct else "/quit")
                        chat.wait(QUIT_GRACE)
                    return
                if not chat.send_line(text):
                    return
                if _ends_chat(text, direct):
                    chat.wait(QUIT_GRACE)  # the server says bye and closes
                    return
