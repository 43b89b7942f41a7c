"""Sans-IO core of the chat: line framing, sanitizing, commands and the hub.

Nothing here touches a socket or a clock: bytes and ``now`` (seconds, any
monotonic origin) go in, ``(recipient, bytes)`` pairs and close orders come
out.  ``services/chat.py`` drives it from asyncio; ``clients/chat.py`` reuses
the framer and the sanitizer.

Wire protocol (compatible with seed 002's chat, practice 1 / assignment 1,
and with plain ``nc``/``telnet``)
---------------------------------------------------------------------------
- Lines of UTF-8 text ending in ``\\n`` or ``\\r\\n``.  A line's content (its
  ending excluded) may be at most ``MAX_LINE`` (4096) bytes; a longer line is
  refused with a notice and discarded up to its end, never buffered whole.
  Invalid UTF-8 is replaced by U+FFFD.
- Every line a client sends is sanitized before anyone sees it: terminal
  escape sequences (CSI, OSC, DCS, ... and their 8-bit forms), C0/C1 control
  characters, DEL and bidirectional-override characters are removed and tabs
  become spaces, so no client can move another's cursor, retitle its window
  or reorder its text.
- The server speaks first only when ``ask_nick`` is set: by default it waits
  for the client's first line, as the seed's server does (the seed's client
  speaks first, then reads exactly once).  **The first line is the
  nickname** (a bare name, or ``/nick NAME``); until a valid, free nickname
  is given the client stays unnamed, receives nothing from rooms and is told
  why its name was refused.
- Every line gets at least one line back: a room message is echoed to its
  sender as ``<nick> text`` (in the room's order), a command gets its reply.
  That is what lets the seed's strictly alternating client (send one line,
  read once) keep working; full-duplex clients use the echo as delivery
  confirmation.  Empty lines are ignored.
- Commands: ``/nick NAME``, ``/join ROOM`` (a client is in exactly one room
  at a time; joining moves it), ``/part`` (back to the default room),
  ``/who``, ``/rooms``, ``/msg NICK text``, ``/me action``, ``/help``,
  ``/quit [reason]``.  A line starting with ``exit`` ends the session, as in
  the seed (``strncmp(buffer, "exit", 4)``).  ``//text`` sends ``/text``.
- Server lines: ``<nick> text`` (room message), ``* nick text`` (``/me``),
  ``*nick* text`` (private message to you), ``-> *nick* text`` (your private
  message, as sent), ``* ...`` (notices: joins, leaves, errors, replies).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass

#: most bytes in one line, its line ending excluded
MAX_LINE = 4096
DEFAULT_ROOM = "lobby"
MAX_NICK = 24
MAX_ROOM = 32
#: most nicknames one /who or join line lists
LIST_NAMES = 50


# -- framing -------------------------------------------------------------------


@dataclass(frozen=True)
class TooLong:
    """A line longer than the cap was discarded (``size``: bytes seen so far,
    at least ``MAX_LINE + 1``)."""

    size: int


class LineFramer:
    """Split a byte stream into lines (``\\n`` or ``\\r\\n``), each capped.

    ``feed`` returns complete lines (bytes, ending stripped) and ``TooLong``
    markers.  Memory stays bounded by ``max_line`` plus one chunk: once the
    pending partial line exceeds the cap it is dropped, a single ``TooLong``
    is reported, and input is discarded until the next ``\\n``.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        self._discarded = 0

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete line (never more than ``max_line + 1``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        out: list[bytes | TooLong] = []
        start = 0
        end = len(data)
        while start < end:
            nl = data.find(b"\n", start)
            if self._discarding:
                if nl < 0:
                    self._discarded += end - start
                    return out
                self._discarding = False
                self._discarded = 0
                start = nl + 1
                continue
            if nl < 0:
                self._buf += data[start:end]
                if len(self._buf) > self.max_line + 1:  # +1: a lone '\r' may still be the ending's
                    self._start_discarding(out)
                return out
            if self._buf:
                self._buf += data[start:nl]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = data[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                out.append(TooLong(len(line)))
            else:
                out.append(line)
        return out

    def flush(self) -> bytes | None:
        """At EOF: the unterminated last line, if any (seed peers may send one)."""
        if self._discarding or not self._buf:
            return None
        line = bytes(self._buf)
        self._buf.clear()
        line = line[:-1] if line.endswith(b"\r") else line
        return line if len(line) <= self.max_line else None

    def _start_discarding(self, out: list[bytes | TooLong]) -> None:
        out.append(TooLong(len(self._buf)))
        self._buf.clear()
        self._discarding = True


def encode_line(text: str) -> bytes:
    """One protocol line: UTF-8 with a ``\\n`` ending."""
    return text.encode("utf-8", "replace") + b"\n"


# -- sanitizing ----------------------------------------------------------------

# ECMA-48 sequences, 7-bit (ESC ...) and 8-bit (C1 code points) forms.
_ESCAPES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?            # CSI: cursor, colours, erase
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) [^\x07\x1b\x9c]*
      (?:\x07|\x1b\\|\x9c)?                                             # OSC/DCS/SOS/PM/APC ... ST or BEL
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                                    # any other ESC sequence
    """,
    re.VERBOSE,
)
# C0 (tab handled apart), DEL, C1, and the bidi embedding/override/isolate
# controls that reorder how the rest of a terminal line is displayed.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def sanitize(text: str) -> str:
    """``text`` without escape sequences or control characters (tab -> space).

    Escape sequences go first, whole, so that their parameters (``[31m``) do
    not survive as visible junk; then every remaining control character.  The
    result contains no ESC and no C0/C1 character, and ``sanitize`` is
    idempotent.
    """
    if text.isprintable():  # fast path: the common case has nothing to strip
        return text
    text = _ESCAPES.sub("", text)
    text = text.replace("\t", " ")
    return _CONTROLS.sub("", text)


def decode_line(raw: bytes) -> str:
    """A received line as sanitized text (bad UTF-8 becomes U+FFFD)."""
    return sanitize(raw.decode("utf-8", "replace"))


# -- names -----------------------------------------------------------------------

_NAME_EXTRA = set("_-")


def valid_nick(nick: str) -> str | None:
    """None when ``nick`` is acceptable, else why not."""
    if not 1 <= len(nick) <= MAX_NICK:
        return f"a nickname has 1 to {MAX_NICK} characters"
    if not all(c.isalnum() or c in _NAME_EXTRA for c in nick):
        return "a nickname has only letters, digits, '_' and '-'"
    if nick[0] == "-":
        return "a nickname does not start with '-'"
    return None


def nick_key(nick: str) -> str:
    """Nicknames are unique regardless of case and Unicode normal form."""
    return unicodedata.normalize("NFKC", nick).casefold()


def room_key(room: str) -> str | None:
    """The canonical room name (``#Lobby`` -> ``lobby``), or None if invalid."""
    name = room.removeprefix("#")
    name = unicodedata.normalize("NFKC", name).casefold()
    if not 1 <= len(name) <= MAX_ROOM or not all(c.isalnum() or c in _NAME_EXTRA for c in name):
        return None
    return name


# -- rate limiting ---------------------------------------------------------------


class TokenBucket:
    """``rate`` lines per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    @property
    def full(self) -> bool:
        return self.tokens >= self.burst


# -- the hub -----------------------------------------------------------------------


@dataclass
class HubConfig:
    """Policy knobs of a hub (the service maps its options onto these)."""

    default_room: str = DEFAULT_ROOM
    max_line: int = MAX_LINE
    #: lines per second per client (0 = unlimited) and the burst allowed
    rate: float = 5.0
    burst: int = 20
    #: dropped lines (after the first notice) before a flooder is disconnected
    flood_strikes: int = 10
    #: connections per source address (0 = unlimited)
    max_per_source: int = 0
    #: greet new connections with a nickname question (the seed's client
    #: speaks first, so by default the server waits for the first line)
    ask_nick: bool = False


@dataclass
class Client:
    cid: int
    source: str
    framer: LineFramer
    bucket: TokenBucket | None
    nick: str | None = None
    room: str | None = None
    strikes: int = 0


class Outbox:
    """What the driver must do: bytes per recipient, then connections to close.

    Operations are kept in order as ``[targets, chunks]``: a unicast has the
    1-tuple ``(cid,)``, a room cast the room's member snapshot.  Consecutive
    operations to the same targets are merged (their chunks appended), and
    the hub hands out the *same* snapshot tuple for a room while its
    membership is unchanged, so a flood of room messages stays one operation
    however many lines it holds.

    ``writes()`` turns the operations into ``(targets, bytes)`` entries in
    which every recipient appears at most once: one input (or one batch of
    inputs, see ``absorb``) produces one write per recipient.  The seed's
    client reads exactly once per line it sends and must get the whole
    reply in that read; and one write per recipient instead of one per
    line is what keeps the fan-out cheap (a write is a system call).
    """

    __slots__ = ("closes", "ops")

    def __init__(self) -> None:
        self.ops: list[tuple[tuple[int, ...], list[bytes]]] = []
        self.closes: list[tuple[int, str]] = []

    def send(self, cid: int, data: bytes) -> None:
        self._add((cid,), data)

    def cast(self, cids: tuple[int, ...], data: bytes) -> None:
        if cids:
            self._add(cids, data)

    def _add(self, targets: tuple[int, ...], data: bytes) -> None:
        ops = self.ops
        if ops:
            last = ops[-1]
            if last[0] is targets or last[0] == targets:
                last[1].append(data)
                return
        ops.append((targets, [data]))

    def absorb(self, other: Outbox) -> None:
        """Append ``other``'s operations (not its closes) after ours, merging
        where the targets match: the driver collects every input handled in
        one event-loop pass into one outbox and writes it once."""
        ops = self.ops
        for targets, chunks in other.ops:
            if ops:
                last = ops[-1]
                if last[0] is targets or last[0] == targets:
                    last[1].extend(chunks)
                    continue
            ops.append((targets, list(chunks)))

    def writes(self) -> list[tuple[tuple[int, ...], bytes]]:
        """``(targets, data)`` entries, each recipient in at most one, each
        recipient's bytes in operation order."""
        ops = self.ops
        if len(ops) == 1:  # the common case: one room's messages, or one reply
            targets, chunks = ops[0]
            return [(targets, chunks[0] if len(chunks) == 1 else b"".join(chunks))]
        # Group by target object (a room's snapshot is shared); when the groups
        # do not overlap (rooms are disjoint, so this is the usual busy-daemon
        # case) each recipient's bytes all come from its one group, in order.
        groups: dict[int, tuple[tuple[int, ...], list[bytes]]] = {}
        for targets, chunks in ops:
            group = groups.get(id(targets))
            if group is None:
                groups[id(targets)] = (targets, list(chunks))
            else:
                group[1].extend(chunks)
        sets = [targets for targets, _ in groups.values()]
        if len(set().union(*sets)) == sum(map(len, sets)):
            return [(targets, b"".join(chunks)) for targets, chunks in groups.values()]
        # Overlapping targets (e.g. a reply to one member between two room
        # messages): merge per recipient, in order.
        merged: dict[int, list[bytes]] = {}
        for targets, chunks in ops:
            data = b"".join(chunks)
            for cid in targets:
                parts = merged.get(cid)
                if parts is None:
                    merged[cid] = [data]
                else:
                    parts.append(data)
        return [((cid,), parts[0] if len(parts) == 1 else b"".join(parts)) for cid, parts in merged.items()]

    def items(self) -> list[tuple[int, bytes]]:
        """``(recipient, data)`` pairs, one per recipient, in order."""
        return [(cid, data) for targets, data in self.writes() for cid in targets]

    @property
    def sends(self) -> dict[int, bytes]:
        """Recipient -> all its bytes (for tests and inspection)."""
        return dict(self.items())

    def for_client(self, cid: int) -> bytes:
        """All of ``cid``'s bytes, in order (without merging everyone's)."""
        return b"".join([data for targets, chunks in self.ops if cid in targets for data in chunks])


HELP = (
    "* commands: /nick NAME, /join ROOM, /part, /who, /rooms, /msg NICK text, /me action,"
    " /help, /quit [reason]; a line starting with 'exit' also quits; //text sends /text"
)


class ChatHub:
    """Rooms, members and routing for all connections of one chat service.

    Connection ids (``cid``) are chosen by the driver.  Each event method
    returns an ``Outbox``; a cid listed in ``closes`` has already left the
    hub (its leave notice is in the same outbox), so the driver only has to
    flush and close the connection.
    """

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.clients: dict[int, Client] = {}
        self.nicks: dict[str, int] = {}
        #: room -> members, in join order (dict as an ordered set)
        self.rooms: dict[str, dict[int, None]] = {}
        #: room -> its members as a tuple, built once per membership change:
        #: every message cast to an unchanged room shares one snapshot object
        #: (no per-message copy, and the outbox merges casts by identity)
        self._snapshots: dict[str, tuple[int, ...]] = {}
        self.per_source: dict[str, int] = {}

    # -- events ----------------------------------------------------------------
    def connect(self, cid: int, source: str, now: float) -> Outbox:
        box = Outbox()
        limit = self.config.max_per_source
        if limit and self.per_source.get(source, 0) >= limit:
            box.send(cid, encode_line(f"* too many connections from {source} (limit {limit}); bye"))
            box.closes.append((cid, f"per-source limit {limit} reached"))
            return box
        bucket = TokenBucket(self.config.rate, self.config.burst, now) if self.config.rate > 0 else None
        self.clients[cid] = Client(cid, source, LineFramer(self.config.max_line), bucket)
        self.per_source[source] = self.per_source.get(source, 0) + 1
        if self.config.ask_nick:
            box.send(cid, encode_line("* welcome to inetkit chat; what is your nickname?"))
        return box

    def receive(self, cid: int, data: bytes, now: float) -> Outbox:
        box = Outbox()
        client = self.clients.get(cid)
        if client is None:
            return box
        for item in client.framer.feed(data):
            if isinstance(item, TooLong):
                box.send(cid, encode_line(f"* line too long (over {self.config.max_line} bytes); dropped"))
                continue
            bucket = client.bucket
            if bucket is not None:
                if client.strikes:
                    bucket.refill(now)
                    if bucket.full:  # quiet long enough: forgiven
                        client.strikes = 0
                if not bucket.take(now):
                    self._flooding(client, box)
                    if cid not in self.clients:
                        break
                    continue
            self._line(client, item, box)
            if cid not in self.clients:  # quit, exit or flood: ignore the rest
                break
        return box

    def disconnect(self, cid: int, reason: str = "") -> Outbox:
        """The connection is gone (EOF, error, timeout, overflow)."""
        box = Outbox()
        self._remove(cid, reason or "disconnected", box)
        return box

    # -- queries (for status, tests) -------------------------------------------
    def members(self, room: str) -> list[str]:
        return [self.clients[c].nick or "?" for c in self.rooms.get(room, {})]

    # -- lines -------------------------------------------------------------------
    def _line(self, client: Client, raw: bytes, box: Outbox) -> None:
        text = decode_line(raw).strip()
        if not text:
            return
        if text.startswith("exit"):
            self._quit(client, "exit", box)
            return
        if client.nick is None:
            self._naming(client, text, box)
            return
        if text.startswith("/") and not text.startswith("//"):
            self._command(client, text, box)
            return
        if text.startswith("//"):
            text = text[1:]
        assert client.room is not None
        self._broadcast(client.room, encode_line(f"<{client.nick}> {text}"), box)

    def _naming(self, client: Client, text: str, box: Outbox) -> None:
        if text.startswith("/"):
            verb, _, rest = text.partition(" ")
            verb = verb.lower()
            if verb == "/nick":
                text = rest.strip()
            elif verb in ("/quit", "/q"):
                self._quit(client, rest.strip() or "quit", box)
                return
            elif verb == "/help":
                box.send(client.cid, encode_line(HELP + "; send your nickname first"))
                return
            else:
                box.send(client.cid, encode_line("* choose a nickname first (send it as a line)"))
                return
        problem = self._nick_problem(text)
        if problem:
            box.send(client.cid, encode_line(f"* {problem}; send your nickname"))
            return
        client.nick = text
        self.nicks[nick_key(text)] = client.cid
        room = self.config.default_room
        here = len(self.rooms.get(room, ()))
        box.send(client.cid, encode_line(
            f"* welcome {text}: you are in #{room} with {here} other{'s' if here != 1 else ''}; /help lists commands"
        ))
        self._enter(client, room, box, show_members=False)  # the welcome said who is here

    def _nick_problem(self, nick: str) -> str | None:
        problem = valid_nick(nick)
        if problem:
            return f"{nick!r} is not a valid nickname ({problem})"
        if nick_key(nick) in self.nicks:
            return f"nickname {nick!r} is taken"
        return None

    def _command(self, client: Client, text: str, box: Outbox) -> None:
        verb, _, rest = text.partition(" ")
        verb = verb.lower()
        rest = rest.strip()
        cid = client.cid
        nick = client.nick
        assert nick is not None and client.room is not None
        if verb == "/nick":
            if not rest:
                box.send(cid, encode_line(f"* you are {nick}; /nick NAME changes it"))
                return
            if nick_key(rest) == nick_key(nick) and rest != nick:
                pass  # a change of case only: allowed, the key stays ours
            else:
                problem = self._nick_problem(rest)
                if problem:
                    box.send(cid, encode_line(f"* {problem}"))
                    return
            del self.nicks[nick_key(nick)]
            client.nick = rest
            self.nicks[nick_key(rest)] = cid
            self._broadcast(client.room, encode_line(f"* {nick} is now known as {rest}"), box)
        elif verb == "/join":
            room = room_key(rest) if rest else None
            if room is None:
                box.send(cid, encode_line(f"* /join ROOM: a room name has 1 to {MAX_ROOM} letters, digits, '_' or '-'"))
                return
            if room == client.room:
                box.send(cid, encode_line(f"* you are already in #{room}"))
                return
            self._leave(client, f"joined #{room}", box)
            self._enter(client, room, box)
        elif verb == "/part":
            room = self.config.default_room
            if client.room == room:
                box.send(cid, encode_line(f"* you are in #{room}, the default room; /quit to leave"))
                return
            self._leave(client, "parted", box)
            self._enter(client, room, box)
        elif verb == "/who":
            box.send(cid, encode_line(f"* {self._listing(client.room)}"))
        elif verb == "/rooms":
            listing = ", ".join(f"#{r} ({len(m)})" for r, m in sorted(self.rooms.items()))
            box.send(cid, encode_line(f"* rooms: {listing}"))
        elif verb == "/msg":
            target, _, message = rest.partition(" ")
            message = message.strip()
            if not target or not message:
                box.send(cid, encode_line("* usage: /msg NICK text"))
                return
            tcid = self.nicks.get(nick_key(target))
            if tcid is None:
                box.send(cid, encode_line(f"* no such nickname: {target}"))
                return
            tnick = self.clients[tcid].nick
            box.send(tcid, encode_line(f"*{nick}* {message}"))
            if tcid != cid:
                box.send(cid, encode_line(f"-> *{tnick}* {message}"))
        elif verb == "/me":
            if not rest:
                box.send(cid, encode_line("* usage: /me action"))
                return
            self._broadcast(client.room, encode_line(f"* {nick} {rest}"), box)
        elif verb == "/help":
            box.send(cid, encode_line(HELP))
        elif verb in ("/quit", "/q"):
            self._quit(client, rest or "quit", box)
        else:
            box.send(cid, encode_line(f"* unknown command {verb}; /help lists commands"))

    # -- membership ----------------------------------------------------------------
    def _broadcast(self, room: str, data: bytes, box: Outbox) -> None:
        snapshot = self._snapshots.get(room)
        if snapshot is None:
            members = self.rooms.get(room)
            if not members:
                return
            # a snapshot: later joins and leaves do not change who got it
            snapshot = self._snapshots[room] = tuple(members)
        box.cast(snapshot, data)

    def _listing(self, room: str) -> str:
        """``#room (N): a, b, ...`` with at most ``LIST_NAMES`` names, so the
        line stays far below the line cap even in a room of thousands."""
        members = self.rooms.get(room, {})
        names = [self.clients[c].nick or "?" for c in itertools.islice(members, LIST_NAMES)]
        more = len(members) - len(names)
        return f"#{room} ({len(members)}): {', '.join(names)}" + (f" and {more} more" if more > 0 else "")

    def _enter(self, client: Client, room: str, box: Outbox, show_members: bool = True) -> None:
        members = self.rooms.setdefault(room, {})
        self._broadcast(room, encode_line(f"* {client.nick} joined #{room}"), box)
        members[client.cid] = None
        self._snapshots.pop(room, None)
        client.room = room
        if show_members:
            box.send(client.cid, encode_line(f"* now in {self._listing(room)}"))

    def _leave(self, client: Client, why: str, box: Outbox) -> None:
        room = client.room
        if room is None:
            return
        members = self.rooms.get(room, {})
        members.pop(client.cid, None)
        self._snapshots.pop(room, None)
        client.room = None
        if not members and room != self.config.default_room:
            self.rooms.pop(room, None)  # empty rooms vanish; the default room stays
        self._broadcast(room, encode_line(f"* {client.nick} left #{room} ({why})"), box)

    def _quit(self, client: Client, why: str, box: Outbox) -> None:
        box.send(client.cid, encode_line(f"* bye ({why})"))
        self._remove(client.cid, why, box)
        box.closes.append((client.cid, "exit" if why == "exit" else "quit"))

    def _flooding(self, client: Client, box: Outbox) -> None:
        client.strikes += 1
        if client.strikes == 1:
            box.send(client.cid, encode_line(
                f"* slow down: at most {self.config.rate:g} lines per second; lines are being dropped"
            ))
        elif client.strikes > self.config.flood_strikes:
            why = "flooding"
            box.send(client.cid, encode_line(f"* disconnected for {why}"))
            self._remove(client.cid, why, box)
            box.closes.append((client.cid, why))

    def _remove(self, cid: int, why: str, box: Outbox) -> None:
        client = self.clients.pop(cid, None)
        if client is None:
            return
        self._leave(client, why, box)
        if client.nick is not None and self.nicks.get(nick_key(client.nick)) == cid:
            del self.nicks[nick_key(client.nick)]
        left = self.per_source.get(client.source, 1) - 1
        if left > 0:
            self.per_source[client.source] = left
        else:
            self.per_source.pop(client.source, None)
