"""The hello services.

- ``udp-hello`` (seed 000 §12-3, 9005/udp): every datagram is answered with
  ``Hello Client`` plus NUL; the server logs ``From client: <text up to NUL>``.
- ``hello`` (seed 002 basics, 8081/tcp and 8081/udp): read one message
  (``Hello from client``, no NUL), answer ``Hello from server`` (no NUL).  Over
  TCP the message is delimited as ``inetkit.proto.hello`` explains, then the
  connection closes.

Over UDP neither ever answers a source that could be spoofed for reflection
(port 0, broadcast, multicast): see ``is_reflection_risk``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inetkit.proto.hello import (
    CLIENT_HELLO,
    HELLO_CAP,
    SERVER_HELLO,
    UDP_HELLO_CAP,
    HelloServerSession,
    datagram_text,
    message_text,
)
from inetkit.services.base import (
    ConnectionContext,
    Service,
    StreamSession,
    is_reflection_risk,
)
from inetkit.services.options import Option


def _no_nul(value: Any) -> str | None:
    return "must not contain a NUL byte" if "\x00" in value else None


class UdpHelloService(Service):
    name = "udp-hello"
    summary = "answer every datagram with 'Hello Client' + NUL, log the sender's text (seed 12-3)"
    transports = frozenset({"udp"})
    tcp_models = frozenset()
    udp_models = frozenset({"datagram"})
    OPTIONS = {
        "reply": Option(str, "Hello Client", help="text sent back (a NUL is appended)", check=_no_nul),
    }

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            ctx.log.debug("%s %s: dropped (reflection-risk source)", ctx.service.name, ctx.peer_text)
            return ()
        ctx.log.info("%s %s: From client: %s", ctx.service.name, ctx.peer_text, datagram_text(data, UDP_HELLO_CAP))
        return (self.options.reply.encode("utf-8") + b"\x00",)


class HelloService(Service):
    name = "hello"
    summary = "read 'Hello from client', answer 'Hello from server', over TCP and UDP (seed 002 basics)"
    transports = frozenset({"tcp", "udp"})
    tcp_models = frozenset({"iterative", "fork", "thread", "async"})
    udp_models = frozenset({"datagram"})
    tcp_default_model = "async"
    OPTIONS = {
        "reply": Option(str, SERVER_HELLO.decode(), help="text sent back (no NUL, as in the seed)"),
    }

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        def report(message: bytes | None) -> None:
            if message is None:
                ctx.log.info("%s %s: client closed without a message", ctx.service.name, ctx.peer_text)
            else:
                ctx.log.info("%s %s: Message from client: %s", ctx.service.name, ctx.peer_text, message_text(message))

        return HelloServerSession(self.options.reply.encode("utf-8"), report, CLIENT_HELLO, HELLO_CAP)

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            ctx.log.debug("%s %s: dropped (reflection-risk source)", ctx.service.name, ctx.peer_text)
            return ()
        ctx.log.info("%s %s: Message from client: %s", ctx.service.name, ctx.peer_text, message_text(data[:HELLO_CAP]))
        return (self.options.reply.encode("utf-8"),)
