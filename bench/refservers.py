"""Reference servers written for the bench: the floor inetkit is compared with.

``python -m bench.refservers KIND [--port N]`` binds 127.0.0.1, prints
``port N`` once listening and serves until SIGTERM.

- ``echo-uvloop``: a bare uvloop ``asyncio.Protocol`` echo (what inetkit's
  async model would cost with no framework at all).
- ``daytime-uvloop``: the same for daytime (write the time, close).
- ``daytime-forking``: ``socketserver.ForkingTCPServer`` answering daytime,
  the stdlib's fork-per-connection server.
- ``chat-asyncio``: a bare asyncio line broadcast (every line to every
  client of the one room, the sender included, as inetkit's chat echoes a
  message to its sender), the chat fan-out reference.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import socketserver
import sys
import time


def daytime_bytes() -> bytes:
    return time.strftime("%A, %B %d, %Y %H:%M:%S-%Z\r\n", time.localtime()).encode()


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class Daytime(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(daytime_bytes())  # type: ignore[attr-defined]
        transport.close()


class ChatHub:
    """One room: a line from one client goes to every client (itself included)."""

    def __init__(self) -> None:
        self.clients: set[ChatClient] = set()


class ChatClient(asyncio.Protocol):
    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub.clients.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        *lines, self.buffer = self.buffer.split(b"\n")
        out = b"".join(line + b"\n" for line in lines)
        for client in self.hub.clients:  # the sender too, as inetkit's chat echoes to it
            client.transport.write(out)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.clients.discard(self)


def serve_asyncio(factory, port: int) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", port, backlog=4096))
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


class DaytimeHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(daytime_bytes())


class Forking(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    max_children = 256


def serve_forking(port: int) -> None:
    with Forking(("127.0.0.1", port), DaytimeHandler) as server:
        print(f"port {server.server_address[1]}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refservers")
    parser.add_argument("kind", choices=("echo-uvloop", "daytime-uvloop", "daytime-forking", "chat-asyncio"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.kind == "echo-uvloop":
        serve_asyncio(Echo, args.port)
    elif args.kind == "daytime-uvloop":
        serve_asyncio(Daytime, args.port)
    elif args.kind == "chat-asyncio":
        hub = ChatHub()
        serve_asyncio(lambda: ChatClient(hub), args.port)
    else:
        serve_forking(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
