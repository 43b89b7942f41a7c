"""The contract between a service and the server models that run it.

A **TCP service** gives each connection a *session*: a sans-IO object that turns
bytes received into bytes to send (``StreamSession``).  Because a session never
touches a socket, every model can drive it: the blocking driver
(``io/blocking.py``) for iterative/fork/thread and an ``asyncio.Protocol``
(``io/aio.py``) for the async model.  A service that needs the socket itself
(``sendfile``, disk I/O, a shared chat hub) overrides ``handle_blocking`` and/or
``handle_async`` and narrows ``models`` accordingly.

A **UDP service** answers datagrams (``handle_datagram``: data in, replies out)
or, when it needs sockets and timers of its own (TFTP), implements
``serve_udp`` which takes over the bound socket.

Services are built once per listener from their parsed options and shared by
all connections of that listener, so they must keep per-connection state in
the session, not on ``self`` (unless ``shared_state`` says otherwise).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

from inetkit.services.options import Option, ParsedOptions, parse_options

Address = tuple[Any, ...]

#: a reply this small always fits an empty socket send buffer: sending it
#: cannot block, so it needs no timeout (``Service._reply_at_once``)
SMALL_REPLY = 4096


@dataclass
class ServiceContext:
    """What a running service knows about where it runs."""

    name: str
    model: str
    proto: str
    log: logging.Logger
    idle_timeout: float | None = None
    #: whole-connection deadline (Limits.session_timeout); None = no deadline
    session_timeout: float | None = None
    #: set by the daemon; counters a service may bump (bytes in/out etc.)
    stats: dict[str, int] = field(default_factory=dict)
    #: for services that own their UDP socket (``serve_udp``): the daemon's
    #: access rules and per-source rate, to call once per new request (a TFTP
    #: RRQ/WRQ); False means drop it without a reply.  None outside a daemon.
    admit_request: Callable[[ConnectionContext], bool] | None = None


@dataclass
class ConnectionContext:
    """One accepted connection (or one datagram's sender, for UDP)."""

    service: ServiceContext
    peer: tuple[str, int]
    local: tuple[str, int]
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def log(self) -> logging.Logger:
        return self.service.log

    @property
    def peer_text(self) -> str:
        host, port = self.peer
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StreamSession:
    """A sans-IO connection handler: bytes in, bytes out, no sockets, no clock.

    Drivers call ``start()`` once, then ``receive(data)`` for every chunk and
    ``receive_eof()`` when the peer half-closes; whatever they return is sent.
    After sending, a driver:

    - closes the connection when ``closing`` is true;
    - half-closes (``shutdown(SHUT_WR)``) once when ``shutdown_write`` is true,
      and keeps reading;
    - calls ``produce(budget)`` whenever the socket can take more while
      ``producing`` is true (chargen, file streaming), so output is generated
      under flow control and never buffered without bound.
    """

    closing: bool = False
    shutdown_write: bool = False
    producing: bool = False

    def start(self) -> bytes:
        return b""

    def receive(self, data: bytes) -> bytes:
        return b""

    def receive_eof(self) -> bytes:
        self.closing = True
        return b""

    def produce(self, budget: int) -> bytes:
        return b""

    def connection_lost(self, error: BaseException | None) -> None:
        """The connection ended (normally or not); release resources here."""


class Service:
    """Base of every built-in service.  Subclasses set the class attributes."""

    #: registry name, also the default handler of a ``[services.NAME]`` table
    name: ClassVar[str] = ""
    #: one-line description for ``inetkit check`` and ``inetkit run --help``
    summary: ClassVar[str] = ""
    transports: ClassVar[frozenset[str]] = frozenset({"tcp"})
    #: models allowed for TCP and for UDP
    tcp_models: ClassVar[frozenset[str]] = frozenset({"iterative", "fork", "thread", "async"})
    udp_models: ClassVar[frozenset[str]] = frozenset({"datagram"})
    tcp_default_model: ClassVar[str] = "async"
    udp_default_model: ClassVar[str] = "datagram"
    #: state shared by all connections in one process (chat): refuses fork/exec
    shared_state: ClassVar[bool] = False
    OPTIONS: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, options: Mapping[str, Any] | None = None, where: str = "options") -> None:
        self.options: ParsedOptions = self.parse_options(options or {}, where)

    @classmethod
    def parse_options(cls, raw: Mapping[str, Any], where: str = "options") -> ParsedOptions:
        return parse_options(cls.OPTIONS, raw, where)

    @classmethod
    def models_for(cls, proto: str) -> frozenset[str]:
        return cls.tcp_models if proto == "tcp" else cls.udp_models

    @classmethod
    def default_model_for(cls, proto: str) -> str:
        return cls.tcp_default_model if proto == "tcp" else cls.udp_default_model

    # -- TCP ---------------------------------------------------------------
    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        """A fresh sans-IO session for one connection."""
        raise NotImplementedError(f"{type(self).__name__} has no stream session")

    def handle_blocking(self, sock: socket.socket, ctx: ConnectionContext) -> None:
        """Serve one connection on a blocking socket (iterative, fork, thread)."""
        if self.instant_reply:
            self._reply_at_once(sock, ctx)
            return
        from inetkit.io.blocking import drive_session

        drive_session(sock, self.open_session(ctx), ctx)

    def _reply_at_once(self, sock: socket.socket, ctx: ConnectionContext) -> None:
        """``instant_reply``: send the session's whole answer, read nothing.
        Lean on purpose: in the fork model every page this touches is copied
        into the child (the async model's twin is models/instant.py)."""
        reply = instant_answer(self.open_session(ctx))
        if len(reply) > SMALL_REPLY:  # may not fit the send buffer: a peer that never reads must time out
            sock.settimeout(ctx.service.idle_timeout)
        sock.sendall(reply)
        ctx.bytes_out += len(reply)

    #: an ``async def handle_async(reader, writer, ctx)`` override makes the
    #: async model use asyncio streams instead of the session protocol
    handle_async: ClassVar[Any] = None

    #: the session's ``start()`` is the whole answer and it closes at once,
    #: reading nothing (daytime, time): the async model then replies straight
    #: from the accepted socket (models/instant.py), without a transport
    instant_reply: ClassVar[bool] = False
    #: with ``instant_reply``: the answer depends on nothing but the current
    #: second of the wall clock (daytime, time), so a server may compute it
    #: once per second for all connections (the async model's instant path
    #: and the fork model's worker do; see ``answers_per_second``).
    #: Vouches for the ``open_session`` of the class that sets it only.
    instant_reply_per_second: ClassVar[bool] = False

    # -- UDP ---------------------------------------------------------------
    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        """Replies to one datagram, each sent back to ``ctx.peer``."""
        return ()

    #: an ``async def serve_udp(sock, ctx: ServiceContext)`` override takes over
    #: the bound UDP socket (for services with their own sockets and timers)
    serve_udp: ClassVar[Any] = None

    # -- lifecycle ---------------------------------------------------------
    def begin_stop(self) -> None:
        """The daemon stops accepting and starts its grace period.  A service
        whose connections never end on their own (chat) says goodbye and
        closes them here, so the drain need not wait out the whole grace."""

    async def aclose(self) -> None:
        """Called once when the daemon stops serving this listener."""


def answers_per_second(service: Service) -> bool:
    """True when ``service`` is covered by ``instant_reply_per_second``: the
    flag vouches for the ``open_session`` of the class that set it, so a
    subclass with another ``open_session`` (its answer may depend on the
    peer) is not covered unless it sets the flag itself."""
    kind = type(service)
    if not service.instant_reply:
        return False
    for klass in kind.__mro__:
        if "instant_reply_per_second" in vars(klass):
            return (bool(vars(klass)["instant_reply_per_second"])
                    and kind.open_session is getattr(klass, "open_session", None))
    return False


def instant_answer(session: StreamSession) -> bytes:
    """The whole answer of an ``instant_reply`` service's fresh session.  A
    session that would go on reading or producing is a programming error."""
    reply = session.start()
    if not session.closing or session.producing:
        raise RuntimeError(f"{type(session).__name__} does not answer at once and close "
                           "(its service must not set instant_reply)")
    return reply


#: UDP ports this process serves in-process datagram services on (a count per
#: port: the same port may be bound on several addresses); see is_reflection_risk
OWN_DATAGRAM_PORTS: dict[int, int] = {}


def is_reflection_risk(peer: tuple[str, int]) -> bool:
    """True for UDP sources that must never get a reply (RFC 862 family abuse).

    Port 0 is not a real sender; broadcast and multicast sources are spoofed
    by definition; replying to them turns a small service into an amplifier.
    A source port that is one of our own UDP service ports is a spoofed loop
    request (the echo/chargen ping-pong, CVE-1999-0103): one forged datagram
    from "our chargen" to our echo would otherwise bounce between them
    forever.  As FreeBSD inetd's check_loop, only the port is compared.
    """
    import ipaddress

    host, port = peer[0], peer[1]
    if port == 0 or port in OWN_DATAGRAM_PORTS:
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    if addr.is_multicast or addr.is_unspecified:
        return True
    if isinstance(addr, ipaddress.IPv4Address) and (addr == ipaddress.IPv4Address("255.255.255.255") or int(addr) & 0xFF == 0xFF):
        # limited broadcast, or the broadcast address of a /24 or wider network
        return True
    return False
