"""The sans-IO TFTP sessions driven by hand with a fake clock."""

from __future__ import annotations

import itertools

from inetkit.proto.tftp import packets as P
from inetkit.proto.tftp.options import Settings
from inetkit.proto.tftp.session import Abort, Receiver, Sender


class Source:
    def __init__(self, data: bytes, blksize: int) -> None:
        self.data, self.blksize, self.reads = data, blksize, 0

    def block(self, index: int) -> bytes:
        self.reads += 1
        return self.data[(index - 1) * self.blksize:index * self.blksize]

    def release(self, below: int) -> None:
        pass


def ack(n: int) -> bytes:
    return P.encode_ack(n)


def blocks(out: list[bytes]) -> list[int]:
    return [P.decode(d).block for d in out]  # type: ignore[union-attr]


def test_lock_step_and_no_sorcerers_apprentice() -> None:
    s = Sender(Source(b"x" * 1000, 512), Settings(), 0.0)
    assert blocks(s.start(0.0)) == [1]
    assert blocks(s.receive(ack(1), 0.01)) == [2]
    # a duplicate ACK 1 (delayed or duplicated by the network) gets nothing
    assert s.receive(ack(1), 0.02) == []
    assert s.receive(ack(1), 0.03) == []
    assert s.receive(ack(2), 0.04) == [] and s.complete and s.finished
    assert s.bytes == 1000


def test_exact_multiple_sends_empty_final_block() -> None:
    s = Sender(Source(b"y" * 512, 512), Settings(), 0.0)
    s.start(0.0)
    out = s.receive(ack(1), 0.001)
    assert out == [P.encode_data(2, b"")]
    s.receive(ack(2), 0.002)
    assert s.complete


def test_oack_first_then_ack0() -> None:
    oack = P.encode_oack({"blksize": "8"})
    s = Sender(Source(b"abcdefghij", 8), Settings(blksize=8), 0.0, first=oack)
    assert s.start(0.0) == [oack]
    assert s.on_timer(1.0) == [oack]  # lost OACK is resent
    assert s.receive(ack(0), 1.1) == [P.encode_data(1, b"abcdefgh")]


def test_window_resends_only_from_first_unacked() -> None:
    s = Sender(Source(bytes(range(80)), 8), Settings(blksize=8, windowsize=4), 0.0)
    assert blocks(s.start(0.0)) == [1, 2, 3, 4]
    # the receiver saw a gap after 2: resend from 3, a full window
    assert blocks(s.receive(ack(2), 0.01)) == [3, 4, 5, 6]
    assert s.receive(ack(2), 0.011) == []  # duplicate gap ACK: ignored
    assert blocks(s.receive(ack(6), 0.02)) == [7, 8, 9, 10]
    # first a tail-loss probe after 1.5 round trips: the window's last block only,
    # again after twice that wait while the RTO is further off
    rto_at = 0.02 + s.rto
    probe_at = s.next_deadline() or 0
    assert probe_at < rto_at
    assert blocks(s.on_timer(probe_at)) == [10]
    second = s.next_deadline() or 0
    if second < rto_at:
        assert second - probe_at == 2 * (probe_at - 0.02)
        assert blocks(s.on_timer(second)) == [10]
    # then the timeout: resend from the first unacknowledged block only
    assert (s.next_deadline() or 0) >= rto_at
    assert blocks(s.on_timer(s.next_deadline() or 0)) == [7, 8, 9, 10]
    assert s.receive(ack(5), 0.5) == []  # old ACK below the window: ignored
    assert blocks(s.receive(ack(10), 0.6)) == [11]  # block 11 is the final (empty) one
    s.receive(ack(11), 0.7)
    assert s.complete and s.bytes == 80


def test_window_duplicate_ack_resends_once_when_it_answers_the_window() -> None:
    """RFC 7440: a gap at a window's first block makes the receiver repeat the
    ACK that opened the window; the sender restarts the window at once (no
    RTO), but not for a copy right behind the original, and once per window."""
    s = Sender(Source(bytes(range(200)), 8), Settings(blksize=8, windowsize=4, timeout=1.0), 0.0,
               first=P.encode_oack({"blksize": "8", "windowsize": "4"}))
    s.start(0.0)
    assert blocks(s.receive(ack(0), 0.001)) == [1, 2, 3, 4]  # RTT sample: 1 ms
    assert blocks(s.receive(ack(4), 0.003)) == [5, 6, 7, 8]
    assert s.receive(ack(4), 0.0031) == []  # a network copy of ACK 4: too early to answer the window
    # block 5 lost: the receiver's gap ACK repeats ACK 4 about one round trip later
    assert blocks(s.receive(ack(4), 0.004)) == [5, 6, 7, 8]
    assert s.retransmissions == 1
    assert s.receive(ack(4), 0.006) == []  # once per window: copies never multiply
    assert blocks(s.receive(ack(8), 0.007)) == [9, 10, 11, 12]


def test_lock_step_duplicate_ack_still_ignored_after_rtt() -> None:
    s = Sender(Source(b"x" * 2000, 512), Settings(timeout=1.0), 0.0, first=P.encode_oack({"tsize": "2000"}))
    s.start(0.0)
    assert blocks(s.receive(ack(0), 0.001)) == [1]
    assert blocks(s.receive(ack(1), 0.002)) == [2]
    assert s.receive(ack(1), 0.5) == []  # Sorcerer's Apprentice: only the timer resends


def test_block_numbers_wrap_to_zero() -> None:
    n = 65536 + 10
    data = b"z" * (8 * n + 3)
    s = Sender(Source(data, 8), Settings(blksize=8, windowsize=1), 0.0)
    got = bytearray()
    r = Receiver(got.extend, Settings(blksize=8), 0.0)
    out = r.start(0.0)
    assert out == [ack(0)]
    wire = s.start(0.0)
    seen_zero = False
    t = 0.0
    while not s.finished:
        t += 0.0001
        (data_packet,) = wire
        if data_packet[2:4] == b"\x00\x00":
            seen_zero = True
        (reply,) = r.receive(data_packet, t)
        wire = s.receive(reply, t)
    assert seen_zero and bytes(got) == data and r.complete and s.complete


def test_retransmission_backs_off_and_gives_up() -> None:
    s = Sender(Source(b"q" * 100, 512), Settings(timeout=1.0), 0.0, max_retries=3, give_up=100)
    s.start(0.0)
    deadlines = []
    for _ in range(3):
        due = s.next_deadline()
        assert due is not None
        deadlines.append(due)
        assert blocks(s.on_timer(due)) == [1]
    out = s.on_timer(s.next_deadline() or 0)
    assert P.decode(out[0]) == P.Error(0, "transfer timed out")
    assert s.finished and not s.complete and s.failure is not None
    gaps = [b - a for a, b in itertools.pairwise(deadlines)]
    assert gaps[1] > gaps[0]  # exponential backoff


def test_rto_adapts_to_measured_rtt() -> None:
    s = Sender(Source(b"r" * 512 * 50, 512), Settings(timeout=1.0), 0.0)
    s.start(0.0)
    t = 0.0
    for i in range(1, 40):
        t += 0.001
        s.receive(ack(i), t)
    assert s.rto < 0.05  # converged towards 1 ms RTT from the 1 s start
    assert s.on_timer(t + 0.0001) == []  # not due yet


def test_receiver_dup_gap_and_final() -> None:
    got = bytearray()
    r = Receiver(got.extend, Settings(blksize=4, windowsize=3), 0.0, dally=1.0)
    r.start(0.0)
    assert r.receive(P.encode_data(1, b"aaaa"), 0.01) == []
    assert r.receive(P.encode_data(3, b"cccc"), 0.02) == [ack(1)]  # gap: ask from 2
    assert r.receive(P.encode_data(4, b"dddd"), 0.0201) == []  # once per burst...
    assert r.receive(P.encode_data(4, b"dddd"), 0.025) == [ack(1)]  # ...asked again later
    assert r.receive(P.encode_data(2, b"bbbb"), 0.03) == []
    assert r.receive(P.encode_data(3, b"cccc"), 0.031) == []
    assert r.receive(P.encode_data(4, b"dddd"), 0.032) == [ack(4)]  # window of 3 since last ACK
    assert r.receive(P.encode_data(4, b"dddd"), 0.5) == [ack(4)]  # duplicate: re-ACK (rate-limited)
    assert r.receive(P.encode_data(4, b"dddd"), 0.5) == []
    assert r.receive(P.encode_data(5, b"e"), 0.6) == [ack(5)]
    assert r.complete and not r.finished  # dallying
    assert r.receive(P.encode_data(5, b"e"), 0.7) == [ack(5)]  # final ACK lost: answer again
    r.on_timer(2.0)
    assert r.finished and bytes(got) == b"aaaabbbbccccdddde"


def test_receiver_rejects_oversized_block_and_sink_abort() -> None:
    r = Receiver(lambda b: None, Settings(blksize=8), 0.0)
    r.start(0.0)
    out = r.receive(P.encode_data(1, b"x" * 9), 0.1)
    assert P.decode(out[0]).code == P.ERR_ILLEGAL  # type: ignore[union-attr]

    def full(_: bytes) -> None:
        raise Abort(P.ERR_DISK_FULL, "too big")

    r = Receiver(full, Settings(blksize=8), 0.0)
    r.start(0.0)
    assert P.decode(r.receive(P.encode_data(1, b"x"), 0.1)[0]) == P.Error(3, "too big")
    assert r.failure is not None and not r.complete


def test_client_receiver_falls_back_when_options_ignored() -> None:
    req = P.encode_request(P.RRQ, "f", "octet", {"blksize": "1468"})
    got = bytearray()
    r = Receiver(got.extend, Settings(), 0.0, request=req, requested={"blksize": "1468"})
    assert r.start(0.0) == [req]
    assert r.on_timer(1.0) == [req]  # request retransmitted
    assert r.receive(P.encode_data(1, b"x" * 512), 1.1) == [ack(1)]  # lock-step, 512-byte blocks
    assert r.blksize == 512 and not r.negotiated
    assert r.receive(P.encode_data(2, b"end"), 1.2) == [ack(2)]
    assert r.complete and bytes(got) == b"x" * 512 + b"end"


def test_client_receiver_oack_and_duplicate_oack() -> None:
    req = P.encode_request(P.RRQ, "f", "octet", {"blksize": "16", "tsize": "0"})
    r = Receiver(lambda b: None, Settings(), 0.0, request=req, requested={"blksize": "16", "tsize": "0"})
    r.start(0.0)
    oack = P.encode_oack({"blksize": "16", "tsize": "20"})
    assert r.receive(oack, 0.01) == [ack(0)]
    assert r.blksize == 16 and r.expected_size == 20 and r.negotiated
    assert r.receive(oack, 0.5) == [ack(0)]  # our ACK 0 was lost


def test_client_rejects_bad_oack_with_error_8() -> None:
    req = P.encode_request(P.RRQ, "f", "octet", {"blksize": "16"})
    r = Receiver(lambda b: None, Settings(), 0.0, request=req, requested={"blksize": "16"})
    r.start(0.0)
    out = r.receive(P.encode_oack({"blksize": "32"}), 0.01)
    assert P.decode(out[0]).code == P.ERR_OPTIONS  # type: ignore[union-attr]


def test_client_sender_ack0_and_remote_error() -> None:
    req = P.encode_request(P.WRQ, "f", "octet", {})
    s = Sender(Source(b"hello", 512), Settings(), 0.0, request=req)
    assert s.start(0.0) == [req]
    assert s.receive(ack(0), 0.01) == [P.encode_data(1, b"hello")]
    assert s.receive(P.encode_error(3, "disk full"), 0.02) == []
    assert s.failure is not None and s.failure.remote and s.failure.code == 3


def test_malformed_packet_from_peer_gets_error_not_exception() -> None:
    s = Sender(Source(b"x" * 600, 512), Settings(), 0.0)
    s.start(0.0)
    out = s.receive(b"\x00\x09junk", 0.01)
    assert P.decode(out[0]).code == P.ERR_ILLEGAL  # type: ignore[union-attr]
    assert s.finished and not s.complete


def test_netascii_source_releases_acknowledged_blocks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from inetkit.proto.tftp import netascii
    from inetkit.proto.tftp.sources import NetasciiSource

    text = b"line\n" * 5000
    path = tmp_path / "t.txt"
    path.write_bytes(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        for windowsize in (1, 4):
            source = NetasciiSource(fd, 64)
            s = Sender(source, Settings(blksize=64, windowsize=windowsize), 0.0)
            got = bytearray()
            r = Receiver(got.extend, Settings(blksize=64, windowsize=windowsize), 0.0)
            r.start(0.0)
            wire, t, peak = s.start(0.0), 0.0, 0
            while not s.finished:
                t += 0.0001
                replies = [a for d in wire for a in r.receive(d, t)]
                wire = [d for a in replies for d in s.receive(a, t)]
                peak = max(peak, len(source._blocks))
            assert bytes(got) == netascii.encode(text)
            # acknowledged blocks are dropped, not hoarded (lock-step tells the source every 16 blocks)
            assert peak <= max(windowsize, 16) + 2
    finally:
        os.close(fd)


def test_octet_source_read_ahead_matches_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Blocks cut from the read-ahead chunk, across chunk edges, out of order
    (retransmissions) and at the end (short, or empty after an exact multiple)."""
    import os

    from inetkit.proto.tftp.sources import READ_AHEAD, OctetSource

    for size in (0, 100, 512, READ_AHEAD, READ_AHEAD + 513, 3 * READ_AHEAD - 1):
        data = bytes(i * 7 % 251 for i in range(size))
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            src = OctetSource(fd, 512)
            count = size // 512 + 1
            order = list(range(1, count + 1))
            order[1:1] = [1]  # a retransmission of block 1 after it was read
            order += [count // 2 + 1, count]  # and late ones from long ago
            for index in order:
                assert src.block(index) == data[(index - 1) * 512:index * 512], (size, index)
        finally:
            os.close(fd)


def test_receive_burst_equals_one_by_one() -> None:
    """A GRO burst (memoryviews, in-order runs joined) gives the same ACKs,
    bytes, sink contents and end state as feeding each datagram alone, also
    with gaps, duplicates and the final block inside a burst."""
    import random

    for seed in range(40):
        rng = random.Random(seed)
        blksize, windowsize = 8, rng.choice([1, 2, 4, 16])
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        count = len(data) // blksize + 1
        stream: list[bytes] = []
        for index in range(1, count + 1):
            block = P.encode_data(index & 0xFFFF, data[(index - 1) * blksize:index * blksize])
            if rng.random() < 0.1:
                continue  # lost: the window restarts below
            stream.append(block)
            if rng.random() < 0.1:
                stream.append(block)  # duplicated
        stream += [P.encode_data(i & 0xFFFF, data[(i - 1) * blksize:i * blksize]) for i in range(1, count + 1)]
        sinks: list[list[bytes]] = [[], []]
        sessions = [Receiver(sinks[k].append, Settings(blksize=blksize, windowsize=windowsize), 0.0, dally=1.0)
                    for k in range(2)]
        for s in sessions:
            s.start(0.0)
        outs: list[list[bytes]] = [[], []]
        now = 0.0
        i = 0
        while i < len(stream):
            n = rng.randrange(1, 20)
            burst = stream[i:i + n]
            i += n
            now += 0.001
            for d in burst:
                outs[0] += sessions[0].receive(d, now)
            joined = b"".join(burst)
            views = [memoryview(joined)[sum(map(len, burst[:k])):sum(map(len, burst[:k + 1]))] for k in range(len(burst))]
            outs[1] += sessions[1].receive_burst(views, now)
        a, b = sessions
        assert outs[0] == outs[1], seed
        assert b"".join(sinks[0]) == b"".join(sinks[1]) == data, seed
        assert (a.next, a.bytes, a.complete, a.finished) == (b.next, b.bytes, b.complete, b.finished), seed


def test_large_blocks_reach_the_sink_as_views_and_netascii_still_decodes() -> None:
    """At blksize >= 8192 the sink gets a memoryview of the datagram (no 64 KiB
    copy per block); the netascii decoder and a plain collector both cope."""
    from inetkit.proto.tftp import netascii

    text = (b"line one\r\nCR alone \r\0 end\r\n" * 900)[:20000]  # CR/LF pairs cross block edges
    blksize = 8192
    decoder = netascii.Decoder()
    decoded: list[bytes] = []
    seen: list[object] = []

    def sink(payload: bytes) -> None:
        seen.append(payload)
        decoded.append(decoder.feed(payload))

    r = Receiver(sink, Settings(blksize=blksize), 0.0)
    r.start(0.0)
    for index in range(1, len(text) // blksize + 2):
        r.receive(P.encode_data(index, text[(index - 1) * blksize:index * blksize]), 0.001 * index)
    assert r.complete
    assert any(isinstance(p, memoryview) for p in seen)
    assert b"".join(decoded) + decoder.flush() == netascii.decode(text)


def test_receiver_acks_a_stalled_window_before_its_rto() -> None:
    """RFC 7440, once a block went missing: blocks 5-7 of a 4-block window came
    20 us apart, then nothing: the window's tail was lost, so the receiver
    ACKs block 7 after a few of those gaps (not after its RTO, and without
    counting a retransmission).  Without a loss before, a pause mid-window
    only waits for the RTO (a sender may pause; atftpd does every MiB)."""
    r = Receiver(lambda p: None, Settings(blksize=8, windowsize=4, timeout=1.0), 0.0)
    r.start(0.0)
    t = 0.01
    for index in (1, 2, 3):
        assert r.receive(P.encode_data(index, b"x" * 8), t) == []
        t += 0.00002
    assert (r.next_deadline() or 0) >= t - 0.00002 + r.rto * 0.99  # no loss yet: the plain RTO
    assert r.receive(P.encode_data(4, b"x" * 8), t) == [ack(4)]
    t += 0.0001
    assert r.receive(P.encode_data(6, b"x" * 8), t) == [ack(4)]  # 5 lost: a gap ACK
    t += 0.0001
    for index in (5, 6, 7):  # the sender restarted at 5; 8 is lost
        assert r.receive(P.encode_data(index, b"x" * 8), t) == []
        t += 0.00002
    due = r.next_deadline()
    assert due is not None and due < t + 0.001 < t + r.rto
    assert r.on_timer(due) == [ack(7)]
    assert r.retransmissions == 0
    assert (r.next_deadline() or 0) >= due + r.rto * 0.99  # then the plain RTO
    # the sender restarts at 8: the window goes on normally
    assert r.receive(P.encode_data(8, b"x" * 8), due + 0.001) == []


def test_premature_stall_probe_makes_the_next_wait_longer() -> None:
    """The block a stall probe asked for arrives sooner than a resend could:
    it was late, not lost, so the next probe waits 4x longer."""
    r = Receiver(lambda p: None, Settings(blksize=8, windowsize=4, timeout=1.0), 0.0)
    r.start(0.0)
    r.receive(P.encode_data(2, b"x" * 8), 0.001)  # a gap: this transfer has lost something
    t = 0.002
    for index in (1, 2, 3):
        r.receive(P.encode_data(index, b"x" * 8), t)
        t += 0.00002
    first_wait = (r.next_deadline() or 0) - (t - 0.00002)
    due = r.next_deadline() or 0
    assert r.on_timer(due) == [ack(3)]
    r.receive(P.encode_data(4, b"x" * 8), due + 0.00003)  # the original, merely late
    r.receive(P.encode_data(5, b"x" * 8), due + 0.00005)
    r.receive(P.encode_data(6, b"x" * 8), due + 0.00007)
    second_wait = (r.next_deadline() or 0) - (due + 0.00007)
    assert second_wait >= 3.9 * first_wait


def test_lockstep_ack_answers_only_the_outstanding_block() -> None:
    """``lockstep_ack`` takes the exact ACK of the one outstanding full block
    and nothing else (the driver then falls back to ``receive``)."""
    s = Sender(Source(bytes(range(200)) * 10, 512), Settings(), 0.0)
    assert blocks(s.start(0.0)) == [1]
    assert s.lockstep_ack(ack(0), 0.001) is None  # duplicate of an older block
    assert s.lockstep_ack(ack(2), 0.001) is None  # ahead: out of window
    assert s.lockstep_ack(ack(1) + b"x", 0.001) is None  # not an ACK datagram
    assert s.lockstep_ack(P.encode_error(0, "x"), 0.001) is None
    assert s.lockstep_ack(ack(1), 0.001) == P.encode_data(2, (bytes(range(200)) * 10)[512:1024])
    assert s.lockstep_ack(ack(2), 0.002) == P.encode_data(3, (bytes(range(200)) * 10)[1024:1536])
    final = s.lockstep_ack(ack(3), 0.003)
    assert final == P.encode_data(4, (bytes(range(200)) * 10)[1536:])  # short: the last block
    assert s.lockstep_ack(ack(4), 0.004) is None  # the last block's ACK ends the transfer via receive
    assert s.receive(ack(4), 0.004) == [] and s.complete and s.bytes == 2000


def test_lockstep_ack_read_error_gives_error_datagram() -> None:
    class Failing(Source):
        def block(self, index: int) -> bytes:
            if index == 3:
                raise OSError(5, "Input/output error")
            return super().block(index)

    s = Sender(Failing(b"z" * 4000, 512), Settings(), 0.0)
    s.start(0.0)
    assert s.lockstep_ack(ack(1), 0.001) is not None
    error = s.lockstep_ack(ack(2), 0.002)
    assert error is not None and isinstance(P.decode(error), P.Error)
    assert s.finished and not s.complete and "read error" in (s.failure.message if s.failure else "")
    assert s.lockstep_ack(ack(3), 0.003) is None


def test_lockstep_after_wrap_and_retransmission() -> None:
    """The expected ACK follows the block counter through 65535 -> 0 and
    survives a retransmission (the timer resends the same block)."""
    s = Sender(Source(b"w" * (8 * 65540), 8), Settings(blksize=8), 0.0)
    s.start(0.0)
    now = 0.0
    for index in range(1, 65537):
        now += 0.0001
        assert s.lockstep_ack(ack(index & 0xFFFF), now) is not None
    assert s.base == 65537
    assert blocks(s.on_timer(s.next_deadline() or 0)) == [1]  # 65537 & 0xFFFF
    assert s.lockstep_ack(ack(1), (s.next_deadline() or 0) + 0.001) == P.encode_data(2, b"w" * 8)


def test_prepared_window_is_what_would_be_sent() -> None:
    data = bytes(range(256)) * 2
    plain = Sender(Source(data, 8), Settings(blksize=8, windowsize=4), 0.0)
    source = Source(data, 8)
    ahead = Sender(source, Settings(blksize=8, windowsize=4), 0.0)
    assert plain.start(0.0) == ahead.start(0.0)
    ahead.prepare()
    reads = source.reads
    ahead.prepare()  # already made: not again
    assert source.reads == reads
    # the ACK of the whole window: the prepared datagrams go out, nothing is read
    assert ahead.receive(ack(4), 0.01) == plain.receive(ack(4), 0.01) and source.reads == reads
    ahead.prepare()
    # a gap ACK: the window restarts from 7, the prepared one (9..12) is not it
    assert ahead.receive(ack(6), 0.02) == plain.receive(ack(6), 0.02) == [
        P.encode_data(i, data[(i - 1) * 8:i * 8]) for i in range(7, 11)]
    now = 0.03
    while not plain.finished:
        last = plain.sent_max
        ahead.prepare()
        assert ahead.receive(ack(last), now) == plain.receive(ack(last), now)
        now += 0.01
    assert ahead.complete and ahead.bytes == plain.bytes == len(data)


def test_prepare_leaves_read_errors_to_the_window_that_needs_them() -> None:
    class Failing(Source):
        def block(self, index: int) -> bytes:
            if index == 6:
                raise OSError(5, "Input/output error")
            return super().block(index)

    s = Sender(Failing(b"q" * 100, 8), Settings(blksize=8, windowsize=4), 0.0)
    assert blocks(s.start(0.0)) == [1, 2, 3, 4]
    s.prepare()  # block 6 fails: nothing prepared, no error yet
    assert not s.finished
    out = s.receive(ack(4), 0.01)
    assert len(out) == 1 and isinstance(P.decode(out[0]), P.Error) and s.finished


def test_lock_step_sender_prepares_nothing() -> None:
    source = Source(b"x" * 5000, 512)
    s = Sender(source, Settings(), 0.0)
    s.start(0.0)
    reads = source.reads
    s.prepare()
    assert source.reads == reads


def test_deferred_writes_ack_first_then_write_in_order() -> None:
    got: list[bytes] = []
    r = Receiver(got.append, Settings(blksize=8, windowsize=4), 0.0)
    r.defer_writes = True
    r.start(0.0)
    window = [P.encode_data(i, bytes([i]) * 8) for i in range(1, 5)]
    assert r.receive_burst(window, 0.01) == [ack(4)]
    assert got == [] and r.writes_deferred  # the ACK leaves before the writes
    assert r.write_deferred() == []
    assert b"".join(got) == b"".join(bytes([i]) * 8 for i in range(1, 5)) and not r.writes_deferred
    # the final (short) block and what came before it are written before its ACK
    assert r.receive_burst([P.encode_data(5, b"\x05" * 8), P.encode_data(6, b"end")], 0.02) == [ack(6)]
    assert not r.writes_deferred and b"".join(got).endswith(b"\x05" * 8 + b"end") and r.complete


def test_deferred_write_failure_sends_error_and_drops_the_rest() -> None:
    def sink(payload: bytes) -> None:
        raise OSError(28, "No space left on device")

    r = Receiver(sink, Settings(blksize=8, windowsize=4), 0.0)
    r.defer_writes = True
    r.start(0.0)
    assert r.receive_burst([P.encode_data(i, b"d" * 8) for i in range(1, 5)], 0.01) == [ack(4)]
    out = r.write_deferred()
    assert len(out) == 1
    error = P.decode(out[0])
    assert isinstance(error, P.Error) and error.code == P.ERR_DISK_FULL and r.finished and not r.complete
    assert r.receive_burst([P.encode_data(5, b"d" * 8)], 0.02) == [] and r.write_deferred() == []


def test_tail_loss_probe_repeats_with_doubling_waits_before_the_rto() -> None:
    """A lost probe (or its answer) is probed again, each wait twice the last,
    while that comes before the RTO; the RTO then resends the window."""
    s = Sender(Source(bytes(4000), 8), Settings(blksize=8, windowsize=4), 0.0)
    s.start(0.0)
    s.receive(ack(4), 0.0001)  # RTT sample 100 us: rto = 2 ms floor, pto = 0.3 ms
    assert s.srtt is not None and s.rto == 0.002
    waits, at = [], 0.0001
    rto_at = at + s.rto
    while True:
        due = s.next_deadline() or 0
        out = s.on_timer(due)
        if blocks(out) != [8]:
            break
        waits.append(round(due - at, 6))
        at = due
    assert waits == [0.0003, 0.0006]  # 0.3 ms, then 0.6 ms; 1.2 ms more would pass the RTO
    assert blocks(out) == [5, 6, 7, 8] and due >= rto_at  # then the RTO: the whole window


def test_gap_ack_is_repeated_after_a_pause_not_within_a_burst() -> None:
    """Beyond a gap the receiver ACKs the last in-order block once per burst,
    however long the burst lasts (a slow hop spaces a window's blocks out:
    answering its tail again made the sender resend windows over and over);
    a block after a pause of REACK_GAP (the sender's tail-loss probe after
    our gap ACK was lost) gets the ACK again."""
    from inetkit.proto.tftp.session import REACK_GAP

    r = Receiver(lambda p: None, Settings(blksize=8, windowsize=64), 0.0)
    r.start(0.0)
    assert r.receive(P.encode_data(1, b"a" * 8), 0.001) == []
    # block 2 lost: 3..40 arrive 40 us apart, 1.5 ms in all
    now = 0.001
    answers = []
    for block in range(3, 41):
        now += 0.00004
        answers += r.receive(P.encode_data(block, b"x" * 8), now)
    assert answers == [ack(1)]
    # the probe of the window's last block, after a pause
    assert r.receive(P.encode_data(40, b"x" * 8), now + REACK_GAP + 1e-6) == [ack(1)]


def test_duplicates_get_one_answer_per_burst_after_a_pause() -> None:
    from inetkit.proto.tftp.session import REACK_GAP

    r = Receiver(lambda p: None, Settings(blksize=8, windowsize=4), 0.0)
    r.start(0.0)
    for block in range(1, 5):
        r.receive(P.encode_data(block, b"x" * 8), 0.001)  # ACK 4 (lost, say)
    # the sender resends the window after a pause: the first copy is answered,
    # the rest of the burst (blocks 40 us apart) is not
    now, answers = 0.005, []
    for block in range(1, 5):
        now += 0.00004
        answers += r.receive(P.encode_data(block, b"x" * 8), now)
    assert answers == [ack(4)]
    assert r.receive(P.encode_data(4, b"x" * 8), now + REACK_GAP + 1e-6) == [ack(4)]


def _octet_sender(tmp_path, data: bytes, blksize: int = 512) -> Sender:  # type: ignore[no-untyped-def]
    import os

    from inetkit.proto.tftp.sources import OctetSource

    path = tmp_path / f"file-{len(data)}"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    return Sender(OctetSource(fd, blksize), Settings(blksize=blksize), 0.0)


def _steady_transfer(s: Sender, cut_after: int | None = None) -> list[bytes]:
    """What a driver of ``steady_run`` sends when every ACK arrives in turn
    (a duplicate ACK after ``cut_after`` blocks of the first run)."""
    sent = list(s.start(0.0))
    t = 0.0
    while not s.finished:
        acks, datas = s.steady_run()
        if not acks:  # the last block is out: its ACK ends the transfer
            t += 0.001
            sent += s.receive(P.encode_ack(P.decode(sent[-1]).block), t)  # type: ignore[union-attr]
            continue
        started = t
        count = len(acks) if cut_after is None else cut_after
        for datagram in datas[:count]:
            t += 0.0001
            sent.append(datagram)
        s.steady_acked(count, t, started)
        if cut_after is not None:
            assert s.receive(acks[0], t) == []  # a duplicate of an acknowledged block: no answer
            cut_after = None
    return sent


def test_steady_runs_send_what_lockstep_acks_would(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Lock-step in bulk (``steady_run``/``steady_acked``) sends the same
    datagrams as ``lockstep_ack`` block by block: a short last block, an
    empty one (exact multiple), block numbers past 65535 (wrapping to 0)."""
    for size in (5, 512 * 300, 512 * 300 + 1, 512 * 70000 + 7):
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        s = _octet_sender(tmp_path, data)
        sent = _steady_transfer(s)
        expected = [P.encode_data(i & 0xFFFF, data[(i - 1) * 512:i * 512]) for i in range(1, size // 512 + 2)]
        assert sent == expected, size
        assert s.complete and s.bytes == size
        assert s.srtt is not None  # the runs fed the RTT estimator


def test_a_steady_run_cut_short_goes_on_from_where_it_stopped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 2000  # 1000 blocks
    s = _octet_sender(tmp_path, data)
    sent = _steady_transfer(s, cut_after=5)
    assert [P.decode(d).block for d in sent] == list(range(1, 1002))  # type: ignore[union-attr]
    assert s.complete and s.bytes == len(data)


def test_no_steady_run_without_a_bulk_source_or_while_retrying(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Sender(Source(b"x" * 5000, 512), Settings(), 0.0)  # per-block source
    s.start(0.0)
    assert s.steady_run() == ([], [])
    assert s.lockstep_ack(ack(1), 0.001) is not None  # the per-block path goes on
    s = _octet_sender(tmp_path, b"x" * 5000)
    s.start(0.0)
    assert blocks(s.on_timer(s.deadline or 0.0)) == [1]  # block 1 resent: a retry
    assert s.steady_run() == ([], [])
    assert s.lockstep_ack(ack(1), 2.0) is not None  # progress resets the retries
    acks, datas = s.steady_run()
    assert acks[0] == ack(2) and blocks(datas[:2]) == [3, 4]
