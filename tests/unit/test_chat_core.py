"""The chat's sans-IO core: framing, sanitizing, names, rate limit and the hub."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.proto.chat import (
    MAX_LINE,
    ChatHub,
    HubConfig,
    LineFramer,
    Outbox,
    TokenBucket,
    TooLong,
    decode_line,
    nick_key,
    room_key,
    sanitize,
    valid_nick,
)

# -- framer -----------------------------------------------------------------------


def test_framer_splits_lf_and_crlf_and_keeps_partial_lines() -> None:
    f = LineFramer()
    assert f.feed(b"one\r\ntwo\nthr") == [b"one", b"two"]
    assert f.pending == 3
    assert f.feed(b"ee\n") == [b"three"]
    assert f.feed(b"\n") == [b""]
    assert f.pending == 0


def test_framer_crlf_split_across_chunks() -> None:
    f = LineFramer()
    assert f.feed(b"abc\r") == []
    assert f.feed(b"\n") == [b"abc"]


def test_framer_refuses_an_overlong_line_without_buffering_it() -> None:
    f = LineFramer(max_line=10)
    out = f.feed(b"x" * 8)
    assert out == []
    out = f.feed(b"y" * 100)
    assert len(out) == 1 and isinstance(out[0], TooLong) and out[0].size > 10
    assert f.pending == 0  # nothing kept of the long line
    for _ in range(100):  # the rest of it is discarded as it streams in
        assert f.feed(b"z" * 1000) == []
        assert f.pending == 0
    assert f.feed(b"zz\nok\n") == [b"ok"]


def test_framer_line_at_the_cap_passes_one_over_is_refused() -> None:
    f = LineFramer()
    assert f.feed(b"a" * MAX_LINE + b"\r\n") == [b"a" * MAX_LINE]
    out = f.feed(b"a" * (MAX_LINE + 1) + b"\n")
    assert len(out) == 1 and isinstance(out[0], TooLong)


def test_framer_flush_returns_the_unterminated_tail() -> None:
    f = LineFramer()
    f.feed(b"a\nlast")
    assert f.flush() == b"last"
    assert f.flush() is None


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    crlf=st.booleans(),
)
def test_framer_property_any_chunking_gives_the_same_lines(lines: list[bytes], cuts: list[int], crlf: bool) -> None:
    ending = b"\r\n" if crlf else b"\n"
    stream = b"".join(line + ending for line in lines)
    f = LineFramer(max_line=40)
    out: list[bytes | TooLong] = []
    last = 0
    for cut in sorted(c for c in cuts if c <= len(stream)):
        out += f.feed(stream[last:cut])
        last = cut
        assert f.pending <= 41
    out += f.feed(stream[last:])
    expected: list[bytes | str] = []
    for line in lines:
        # with LF endings, a line's own trailing '\r' is read as a CRLF ending
        body = line[:-1] if (not crlf and line.endswith(b"\r")) else line
        expected.append(body if len(body) <= 40 else "long")
    got = ["long" if isinstance(item, TooLong) else item for item in out]
    assert got == expected


# -- sanitizer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]0;evil title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("bell\x07 and back\x08space", "bell and backspace"),
        ("tab\there", "tab here"),
        ("\x9b31mc1 csi", "c1 csi"),
        ("carriage\rreturn", "carriagereturn"),
        ("rtl \u202eevil\u202c ok", "rtl evil ok"),
        ("한글 and émoji 🎉", "한글 and émoji 🎉"),
        ("\x1bPdcs payload\x1b\\tail", "tail"),
    ],
)
def test_sanitize_strips_escapes_and_controls(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


def test_decode_line_replaces_bad_utf8() -> None:
    assert decode_line(b"ok \xff\xfe bad") == "ok \ufffd\ufffd bad"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.text(alphabet="\x1b[]();0123456789mHJ\x07\\\x9b\x9dab\t\r", max_size=60))
def test_sanitize_property_no_control_characters_survive(text: str) -> None:
    clean = sanitize(text)
    assert all(unicodedata.category(c) != "Cc" for c in clean)
    assert "\x1b" not in clean
    assert sanitize(clean) == clean  # idempotent
    assert len(clean) <= len(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "), max_size=80))
def test_sanitize_property_printable_text_is_untouched(text: str) -> None:
    assert sanitize(text) == text


# -- names and rate ------------------------------------------------------------------


def test_nick_and_room_rules() -> None:
    assert valid_nick("alice") is None
    assert valid_nick("김철수_2") is None
    assert valid_nick("") is not None
    assert valid_nick("has space") is not None
    assert valid_nick("-dash") is not None
    assert valid_nick("x" * 25) is not None
    assert nick_key("Alice") == nick_key("ALICE")
    assert room_key("#Lobby") == "lobby"
    assert room_key("bad room") is None
    assert room_key("#") is None


def test_token_bucket_refills_with_time_passed_in() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(100.4) is False  # 0.8 token
    assert b.take(100.5) is True  # 1.0 token
    assert b.take(200.0) and b.full is False


# -- hub --------------------------------------------------------------------------------


def _named(hub: ChatHub, cid: int, nick: str, now: float = 0.0) -> bytes:
    hub.connect(cid, "127.0.0.1", now)
    return hub.receive(cid, nick.encode() + b"\n", now).for_client(cid)


def test_first_line_is_the_nickname_and_the_server_waits_for_it() -> None:
    hub = ChatHub()
    box = hub.connect(1, "127.0.0.1", 0.0)
    assert not box.sends and not box.closes  # the seed's client speaks first
    reply = hub.receive(1, b"alice\n", 0.0).for_client(1)
    assert reply.startswith(b"* welcome alice") and reply.endswith(b"\n")
    assert hub.members("lobby") == ["alice"]


def test_ask_nick_greets_first() -> None:
    hub = ChatHub(HubConfig(ask_nick=True))
    assert b"nickname" in hub.connect(1, "h", 0.0).for_client(1)


def test_room_message_goes_to_all_members_including_the_sender_in_order() -> None:
    hub = ChatHub()
    for cid, nick in ((1, "a"), (2, "b"), (3, "c")):
        _named(hub, cid, nick)
    box = hub.receive(1, b"one\ntwo\n", 1.0)
    for cid in (1, 2, 3):
        assert box.for_client(cid) == b"<a> one\n<a> two\n"
    # one write per recipient per input
    assert [cid for cid, _ in box.items()] == [1, 2, 3]


def test_unnamed_clients_receive_nothing_from_rooms() -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    hub.connect(2, "h", 0.0)
    box = hub.receive(1, b"hi\n", 0.0)
    assert 2 not in box.sends


def test_nick_collision_case_insensitive_and_retry() -> None:
    hub = ChatHub()
    _named(hub, 1, "alice")
    assert b"taken" in _named(hub, 2, "ALICE")
    assert b"welcome bob" in hub.receive(2, b"/nick bob\n", 0.0).for_client(2)
    assert b"taken" in hub.receive(2, b"/nick Alice\n", 0.0).for_client(2)
    box = hub.receive(1, b"/nick Alice\n", 0.0)  # own case change is fine
    assert box.for_client(2) == b"* alice is now known as Alice\n"


def test_invalid_nick_is_explained() -> None:
    hub = ChatHub()
    assert b"not a valid nickname" in _named(hub, 1, "hello there")
    assert b"choose a nickname first" in hub.receive(1, b"/who\n", 0.0).for_client(1)


def test_private_message_reaches_only_its_target() -> None:
    hub = ChatHub()
    for cid, nick in ((1, "a"), (2, "b"), (3, "c")):
        _named(hub, cid, nick)
    box = hub.receive(1, b"/msg B secret\n", 0.0)
    assert box.for_client(2) == b"*a* secret\n"
    assert box.for_client(1) == b"-> *b* secret\n"
    assert 3 not in box.sends
    assert b"no such nickname" in hub.receive(1, b"/msg zed hi\n", 0.0).for_client(1)


def test_join_part_who_rooms_me_help_and_notices() -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    box = hub.receive(1, b"/join #Games\n", 0.0)
    assert box.for_client(2) == b"* a left #lobby (joined #games)\n"
    assert b"now in #games (1): a" in box.for_client(1)
    assert 2 not in hub.receive(1, b"private room talk\n", 0.0).sends
    assert hub.receive(1, b"/who\n", 0.0).for_client(1) == b"* #games (1): a\n"
    assert hub.receive(2, b"/rooms\n", 0.0).for_client(2) == b"* rooms: #games (1), #lobby (1)\n"
    box = hub.receive(1, b"/part\n", 0.0)
    assert box.for_client(2) == b"* a joined #lobby\n"
    assert "games" not in hub.rooms  # empty rooms vanish
    assert hub.receive(2, b"/me waves\n", 0.0).for_client(1) == b"* b waves\n"
    assert b"/msg" in hub.receive(2, b"/help\n", 0.0).for_client(2)
    assert b"unknown command /frob" in hub.receive(2, b"/frob\n", 0.0).for_client(2)
    assert hub.receive(2, b"//slash\n", 0.0).for_client(1) == b"<b> /slash\n"
    assert b"a room name has" in hub.receive(2, b"/join bad name\n", 0.0).for_client(2)


@pytest.mark.parametrize("line", [b"exit\n", b"exit now\r\n", b"/quit\n", b"/QUIT gone\n"])
def test_quit_and_seed_exit_close_with_a_leave_notice(line: bytes) -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    box = hub.receive(1, line + b"ignored after\n", 0.0)
    assert box.for_client(1).startswith(b"* bye")
    assert box.for_client(2).startswith(b"* a left #lobby")
    assert [cid for cid, _ in box.closes] == [1]
    assert 1 not in hub.clients and hub.members("lobby") == ["b"]
    assert not hub.disconnect(1).sends  # idempotent


def test_exit_before_naming_closes_too() -> None:
    hub = ChatHub()
    hub.connect(1, "h", 0.0)
    assert hub.receive(1, b"exit\n", 0.0).closes == [(1, "exit")]


def test_escape_sequences_are_stripped_before_relaying() -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    box = hub.receive(1, b"\x1b[2J\x1b]0;pwned\x07hi\x1b[5m!\r\n", 0.0)
    assert box.for_client(2) == b"<a> hi!\n"
    assert b"\x1b" not in _named(hub, 3, "\x1b[31mc")


def test_overlong_line_is_refused_with_a_notice_and_never_relayed() -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    box = hub.receive(1, b"x" * (MAX_LINE + 10), 0.0)
    assert b"line too long" in box.for_client(1)
    box = hub.receive(1, b"x" * 5000 + b"\nafter\n", 0.0)
    assert box.for_client(2) == b"<a> after\n"


def test_disconnect_sends_a_leave_notice() -> None:
    hub = ChatHub()
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    assert hub.disconnect(2, "connection reset").for_client(1) == b"* b left #lobby (connection reset)\n"
    assert nick_key("b") not in hub.nicks


def test_flooding_gets_a_notice_then_a_disconnect() -> None:
    hub = ChatHub(HubConfig(rate=1.0, burst=3, flood_strikes=2))
    _named(hub, 1, "a", now=0.0)
    _named(hub, 2, "b", now=0.0)
    # the naming line used one token of a's bucket: two more pass, then drops
    box = hub.receive(1, b"m1\nm2\nm3\n", 0.0)
    assert box.for_client(2) == b"<a> m1\n<a> m2\n"
    assert b"slow down" in box.for_client(1)
    assert not box.closes
    box = hub.receive(1, b"m4\n", 0.0)  # strike 2: dropped silently
    assert not box.sends and not box.closes
    box = hub.receive(1, b"m5\n", 0.0)  # strike 3 > 2: out
    assert box.closes == [(1, "flooding")]
    assert b"flooding" in box.for_client(1)
    assert box.for_client(2) == b"* a left #lobby (flooding)\n"


def test_rate_recovers_with_time_and_strikes_reset() -> None:
    hub = ChatHub(HubConfig(rate=1.0, burst=2, flood_strikes=1))
    _named(hub, 1, "a", now=0.0)
    hub.receive(1, b"m1\nm2\n", 0.0)  # m2 dropped: strike 1 (notice)
    box = hub.receive(1, b"later\n", 10.0)  # bucket full again
    assert box.for_client(1) == b"<a> later\n"
    assert hub.clients[1].strikes == 0


def test_per_source_limit_refuses_with_a_notice() -> None:
    hub = ChatHub(HubConfig(max_per_source=2))
    hub.connect(1, "10.0.0.1", 0.0)
    hub.connect(2, "10.0.0.1", 0.0)
    box = hub.connect(3, "10.0.0.1", 0.0)
    assert b"too many connections" in box.for_client(3) and box.closes[0][0] == 3
    assert not hub.connect(4, "10.0.0.2", 0.0).closes
    hub.disconnect(1)
    assert not hub.connect(5, "10.0.0.1", 0.0).closes


# -- outbox batching (one write per recipient per event-loop pass) ----------------


def _three(hub: ChatHub) -> None:
    for cid, nick in ((1, "a"), (2, "b"), (3, "c")):
        _named(hub, cid, nick)


def test_casts_to_an_unchanged_room_share_one_snapshot() -> None:
    hub = ChatHub(HubConfig(rate=0))
    _three(hub)
    first, second = hub.receive(1, b"x\n", 1.0), hub.receive(2, b"y\n", 1.0)
    assert first.ops[0][0] == (1, 2, 3)
    assert first.ops[0][0] is second.ops[0][0]  # no per-message copy of the member list
    box = hub.receive(1, b"one\ntwo\nthree\n", 1.0)
    assert len(box.ops) == 1 and box.ops[0][1] == [b"<a> one\n", b"<a> two\n", b"<a> three\n"]
    _named(hub, 4, "d")
    assert hub.receive(1, b"z\n", 1.0).ops[0][0] == (1, 2, 3, 4)  # membership changed: a new snapshot


def test_absorbed_boxes_become_one_joined_write_per_recipient() -> None:
    hub = ChatHub(HubConfig(rate=0))
    _three(hub)
    pending = Outbox()
    for cid, line in ((1, b"one\n"), (2, b"two\n"), (3, b"three\n")):
        pending.absorb(hub.receive(cid, line, 1.0))
    assert pending.writes() == [((1, 2, 3), b"<a> one\n<b> two\n<c> three\n")]
    assert not pending.closes


def test_a_joiner_gets_only_what_follows_its_join_and_a_leaver_nothing_after() -> None:
    hub = ChatHub(HubConfig(rate=0))
    _named(hub, 1, "a")
    _named(hub, 2, "b")
    pending = Outbox()
    pending.absorb(hub.receive(1, b"before\n", 1.0))
    hub.connect(3, "127.0.0.1", 1.0)
    pending.absorb(hub.receive(3, b"c\n", 1.0))
    pending.absorb(hub.receive(1, b"after\n", 1.0))
    pending.absorb(hub.disconnect(2, "gone"))
    pending.absorb(hub.receive(1, b"last\n", 1.0))
    sends = pending.sends
    assert len(pending.items()) == len(sends) == 3  # one write each
    assert sends[1] == b"<a> before\n* c joined #lobby\n<a> after\n* b left #lobby (gone)\n<a> last\n"
    assert sends[2] == b"<a> before\n* c joined #lobby\n<a> after\n"
    assert sends[3].startswith(b"* welcome c")
    assert sends[3].endswith(b"\n<a> after\n* b left #lobby (gone)\n<a> last\n")
    assert b"before" not in sends[3]


def test_disjoint_rooms_are_written_per_room() -> None:
    hub = ChatHub(HubConfig(rate=0))
    _three(hub)
    hub.receive(3, b"/join games\n", 1.0)
    pending = Outbox()
    pending.absorb(hub.receive(1, b"lobby talk\n", 1.0))
    pending.absorb(hub.receive(3, b"games talk\n", 1.0))
    pending.absorb(hub.receive(2, b"more lobby\n", 1.0))
    assert pending.writes() == [((1, 2), b"<a> lobby talk\n<b> more lobby\n"), ((3,), b"<c> games talk\n")]


def test_overlapping_targets_are_merged_per_recipient_in_order() -> None:
    box = Outbox()
    room = (1, 2, 3)
    box.cast(room, b"A\n")
    box.send(2, b"B\n")
    box.cast(room, b"C\n")
    box.send(2, b"D\n")
    box.send(2, b"E\n")  # consecutive unicasts to one client merge
    assert len(box.ops) == 4
    assert box.sends == {1: b"A\nC\n", 2: b"A\nB\nC\nD\nE\n", 3: b"A\nC\n"}
    assert [cid for cid, _ in box.items()] == [1, 2, 3]


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 5), st.binary(min_size=1, max_size=4)),
        st.tuples(st.just("cast"), st.sampled_from([(1, 2, 3), (4, 5), (1, 2, 3, 4, 5), (2,)]),
                  st.binary(min_size=1, max_size=4)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_OPS, max_size=4))
def test_batched_writes_equal_each_recipients_bytes_in_order(batches: list[list[tuple]]) -> None:
    """Whatever the mix of casts and unicasts, absorbed over several boxes:
    every recipient appears in at most one write, holding exactly its bytes
    in the order they were queued."""
    pending = Outbox()
    expected: dict[int, bytes] = {}
    snapshots: dict[tuple[int, ...], tuple[int, ...]] = {}
    for batch in batches:
        box = Outbox()
        for kind, target, data in batch:
            if kind == "send":
                box.send(target, data)
                expected[target] = expected.get(target, b"") + data
            else:
                shared = snapshots.setdefault(target, target)  # the hub shares a room's tuple
                box.cast(shared, data)
                for cid in target:
                    expected[cid] = expected.get(cid, b"") + data
        pending.absorb(box)
    writes = pending.writes()
    recipients = [cid for targets, _ in writes for cid in targets]
    assert len(recipients) == len(set(recipients))
    assert {cid: data for targets, data in writes for cid in targets} == expected
    assert all(pending.for_client(cid) == expected.get(cid, b"") for cid in range(1, 6))
