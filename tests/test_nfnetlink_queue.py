"""The nfnetlink_queue codec against byte layouts written out from the kernel UAPI headers.

Expected bytes are packed here by hand with literal numbers (linux/netlink.h,
linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_queue.h), never by the
module's own helpers.  No root needed.
"""
import errno
import re
import struct

import pytest

from tests.support import uapi
from tests.support.wire import HDR, nlmsg

from alg.kernel import nfnetlink_queue as nfq
from alg.kernel.queue import PacketQueue, QueueUnavailable, _Netlink

# nlmsghdr is host order: u32 len, u16 type, u16 flags, u32 seq, u32 pid
QUEUE_PACKET, QUEUE_VERDICT, QUEUE_CONFIG = 0x0300, 0x0301, 0x0302     # NFNL_SUBSYS_QUEUE (3) << 8 | op
F_REQUEST, F_ACK = 1, 4


def nfgen(family, queue):
    return struct.pack("BB", family, 0) + struct.pack(">H", queue)


# -- config


def test_bind_queue():
    want = nlmsg(0x0302, F_REQUEST | F_ACK, 7, nfgen(0, 5) + struct.pack("=HH", 8, 1) + b"\x01\x00\x00\x00")
    assert len(want) == 28
    assert nfq.config_cmd(5, nfq.NFQNL_CFG_CMD_BIND, seq=7) == want


def test_pf_bind_carries_family_big_endian():
    got = nfq.config_cmd(0, nfq.NFQNL_CFG_CMD_PF_BIND, pf=2, seq=1)
    assert got[20:] == struct.pack("=HH", 8, 1) + b"\x03\x00\x00\x02"       # cmd 3, pad, pf htons(AF_INET)
    assert got[16:20] == b"\x00\x00\x00\x00"                                # queue 0


def test_unbind_without_ack():
    got = nfq.config_cmd(300, nfq.NFQNL_CFG_CMD_UNBIND, seq=9, ack=False)
    assert got == nlmsg(QUEUE_CONFIG, F_REQUEST, 9, b"\x00\x00\x01\x2c" + struct.pack("=HH", 8, 1) + b"\x02\0\0\0")


def test_params_packed_struct_is_padded():
    # nfqnl_msg_config_params is packed: be32 copy_range + u8 mode = 5 bytes, nla_len 9, 3 bytes padding
    params = struct.pack("=HH", 9, 2) + b"\x00\x00\xff\xff" + b"\x02" + b"\0\0\0"
    maxlen = struct.pack("=HH", 8, 3) + struct.pack(">I", 4096)
    want = nlmsg(QUEUE_CONFIG, F_REQUEST | F_ACK, 2, nfgen(0, 1) + params + maxlen)
    assert len(want) == 40
    assert nfq.config_params(1, 0xFFFF, nfq.NFQNL_COPY_PACKET, maxlen=4096, seq=2) == want
    assert nfq.config_params(1, 0xFFFF, seq=2)[:4] == struct.pack("=I", 32)


def test_fail_open_flags_come_with_their_mask_big_endian():
    want = nlmsg(QUEUE_CONFIG, F_REQUEST | F_ACK, 3, nfgen(0, 0)
                 + struct.pack("=HH", 8, 5) + b"\0\0\0\x01"                  # NFQA_CFG_FLAGS = FAIL_OPEN
                 + struct.pack("=HH", 8, 4) + b"\0\0\0\x01")                 # NFQA_CFG_MASK
    assert nfq.config_flags(0, nfq.NFQA_CFG_F_FAIL_OPEN, seq=3) == want


def test_queue_number_out_of_range_is_named():
    with pytest.raises(ValueError, match="70000"):
        nfq.config_cmd(70000, nfq.NFQNL_CFG_CMD_BIND)


# -- verdicts


def test_verdict_accept_and_drop():
    accept = nlmsg(QUEUE_VERDICT, F_REQUEST, 11,
                   nfgen(0, 2) + struct.pack("=HH", 12, 2) + struct.pack(">II", 1, 0xDEADBEEF))
    assert nfq.verdict_message(2, 0xDEADBEEF, True, seq=11) == accept
    drop = nfq.verdict_message(2, 42, False, seq=11)
    assert drop[24:32] == b"\0\0\0\0" + b"\0\0\0\x2a"


def test_verdict_batch_carries_the_last_id():
    want = nlmsg(0x0303, F_REQUEST, 4, nfgen(0, 7) + struct.pack("=HH", 12, 2) + struct.pack(">II", 1, 300))
    assert nfq.verdict_batch_message(7, 300, True, seq=4) == want


def _seqs():
    n = [100]

    def nxt():
        n[0] += 1
        return n[0]
    return nxt


def _kinds(msgs):
    """(message type, verdict, id, has payload) of each encoded verdict, read back from the bytes."""
    out = []
    for m in msgs:
        mtype = struct.unpack_from("=H", m, 4)[0]
        verdict, pid = struct.unpack_from(">II", m, 24)
        out.append(("batch" if mtype == 0x0303 else "one", verdict, pid, len(m) > 32))
    return out


def test_coalesce_batches_runs_of_plain_accepts_from_the_oldest_held():
    import collections
    held = collections.deque([1, 2, 3, 4, 5, 6, 7])
    given = {1: None, 2: None, 3: nfq.verdict_message(0, 3, True, b"new"), 4: None,
             5: nfq.verdict_message(0, 5, False), 6: None, 7: None}
    msgs = []
    assert nfq.coalesce(0, held, given, _seqs(), msgs) == 3
    assert _kinds(msgs) == [("batch", 1, 2, False), ("one", 1, 3, True), ("batch", 1, 4, False),
                            ("one", 0, 5, False), ("batch", 1, 7, False)]
    assert not held and not given


def test_coalesce_never_batches_past_a_packet_still_held():
    import collections
    held = collections.deque([10, 11, 12])
    given = {11: None, 12: None}                    # 10 has no verdict yet: a batch up to 12 would accept it
    msgs = []
    assert nfq.coalesce(0, held, given, _seqs(), msgs) == 0
    assert _kinds(msgs) == [("one", 1, 11, False), ("one", 1, 12, False)]
    assert list(held) == [10] and not given
    given[10] = None
    msgs = []
    assert nfq.coalesce(0, held, given, _seqs(), msgs) == 1 and _kinds(msgs) == [("batch", 1, 10, False)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 28, 1499])
def test_verdict_with_payload_pads_the_attribute(n):
    payload = bytes(range(256)) * 6
    payload = payload[:n]
    got = nfq.verdict_message(0, 9, True, payload, seq=1)
    pad = -n % 4
    want = nlmsg(QUEUE_VERDICT, F_REQUEST, 1, nfgen(0, 0)
                 + struct.pack("=HH", 12, 2) + struct.pack(">II", 1, 9)
                 + struct.pack("=HH", 4 + n, 10) + payload + b"\0" * pad)
    assert got == want
    assert len(got) % 4 == 0 and struct.unpack_from("=I", got)[0] == len(got)


def test_oversized_payload_refused():
    with pytest.raises(ValueError, match="too long"):
        nfq.verdict_message(0, 1, True, b"x" * 0xFFFC)


# -- packets from the kernel


def _kernel_packet(queue, pid, payload, extra=b"", cap_len=None):
    body = nfgen(2, queue)                                                     # AF_INET
    body += struct.pack("=HH", 11, 1) + struct.pack(">IHB", pid, 0x0800, 1) + b"\0"   # packed 7 bytes + pad
    body += struct.pack("=HH", 8, 3) + struct.pack(">I", 0x10)               # NFQA_MARK
    body += struct.pack("=HH", 8, 5) + struct.pack(">I", 4)                  # NFQA_IFINDEX_INDEV
    body += extra
    body += struct.pack("=HH", 4 + len(payload), 10) + payload + b"\0" * (-len(payload) % 4)
    if cap_len is not None:
        body += struct.pack("=HH", 8, 13) + struct.pack(">I", cap_len)       # NFQA_CAP_LEN
    return nlmsg(QUEUE_PACKET, 0, 0, body)


def test_packet_fields():
    ip = b"E\x00" + b"\x11" * 27                                                # 29 bytes: padded on the wire
    (p,) = nfq.decode(_kernel_packet(3, 0x01020304, ip))
    assert isinstance(p, nfq.Packet)
    assert (p.queue_num, p.packet_id, p.hw_protocol, p.hook) == (3, 0x01020304, 0x0800, 1)
    assert p.payload == ip and p.mark == 0x10 and p.indev == 4 and p.outdev == 0
    assert not p.truncated


def test_nested_and_unknown_attributes_are_skipped():
    ct = struct.pack("=HH", 12, 11 | 0x8000) + struct.pack("=HH", 8, 1) + b"\0\0\0\x07"   # NFQA_CT, nested
    skb = struct.pack("=HH", 8, 14) + struct.pack(">I", 1)                                # NFQA_SKB_INFO
    (p,) = nfq.decode(_kernel_packet(0, 5, b"abcd", extra=ct + skb))
    assert p.payload == b"abcd" and p.packet_id == 5


def test_truncated_copy_is_flagged():
    (p,) = nfq.decode(_kernel_packet(0, 1, b"x" * 100, cap_len=1500))
    assert p.truncated
    (p,) = nfq.decode(_kernel_packet(0, 1, b"x" * 100, cap_len=100))
    assert not p.truncated


def test_meta_only_packet_has_no_payload():
    body = nfgen(2, 0) + struct.pack("=HH", 11, 1) + struct.pack(">IHB", 77, 0x0800, 3) + b"\0"
    (p,) = nfq.decode(nlmsg(QUEUE_PACKET, 0, 0, body))
    assert p.payload is None and p.truncated


def test_packet_without_header_is_an_error():
    body = nfgen(2, 0) + struct.pack("=HH", 8, 10) + b"abcd"
    with pytest.raises(ValueError, match="NFQA_PACKET_HDR"):
        nfq.decode(nlmsg(QUEUE_PACKET, 0, 0, body))


def test_several_messages_in_one_buffer():
    first = _kernel_packet(0, 1, b"one")                        # odd payloads: lengths stay 4-aligned
    second = _kernel_packet(0, 2, b"second packet")
    ack = nlmsg(2, 0, 0, struct.pack("=i", 0) + struct.pack(HDR, 28, QUEUE_CONFIG, 5, 41, 0))
    done = nlmsg(3, 0, 0, b"\0\0\0\0")
    evs = nfq.decode(first + second + ack + done)
    assert [type(e).__name__ for e in evs] == ["Packet", "Packet", "Ack"]
    assert [evs[0].payload, evs[1].payload] == [b"one", b"second packet"]
    assert [evs[0].packet_id, evs[1].packet_id] == [1, 2]
    assert evs[2].seq == 41


def test_unaligned_message_length_is_stepped_over_by_alignment():
    # a message whose nlmsg_len is not a multiple of 4 is followed by padding before the next one
    odd = struct.pack(HDR, 16 + 5, 0x10, 0, 0, 0) + b"abcde" + b"\0\0\0"        # unknown type: skipped
    evs = nfq.decode(odd + _kernel_packet(0, 9, b"z"))
    assert len(evs) == 1 and evs[0].packet_id == 9


def test_bad_lengths_are_named():
    pkt = _kernel_packet(0, 1, b"abc")
    with pytest.raises(ValueError, match="netlink message"):
        nfq.decode(pkt[:-4])                                    # nlmsg_len says more than arrived
    broken = nfgen(2, 0) + struct.pack("=HH", 2, 1) + b"\0\0"   # nla_len < header
    with pytest.raises(ValueError, match="attribute"):
        nfq.decode(nlmsg(QUEUE_PACKET, 0, 0, broken))


# -- errors and acks


def test_error_carries_errno_name_and_request_seq():
    req = struct.pack(HDR, 28, QUEUE_CONFIG, 5, 1234, 0)
    (e,) = nfq.decode(nlmsg(2, 0, 99, struct.pack("=i", -errno.EPERM) + req))
    assert isinstance(e, nfq.NetlinkError) and isinstance(e, OSError)
    assert e.errno == errno.EPERM and e.name == "EPERM" and e.seq == 1234
    assert "EPERM" in str(e)
    (e,) = nfq.decode(nlmsg(2, 0, 5, struct.pack("=i", -errno.EINVAL)))     # no echoed header: outer seq
    assert e.name == "EINVAL" and e.seq == 5


def test_ack_is_error_zero():
    (a,) = nfq.decode(nlmsg(2, 0, 0, struct.pack("=i", 0) + struct.pack(HDR, 28, QUEUE_CONFIG, 5, 8, 0)))
    assert isinstance(a, nfq.Ack) and a.seq == 8


def test_error_message_too_short():
    with pytest.raises(ValueError, match="NLMSG_ERROR"):
        nfq.decode(nlmsg(2, 0, 0, b"\0\0"))


# -- constants against the installed UAPI headers (linux-libc-dev)


def test_constants_match_uapi_headers():
    text = uapi.header("netfilter/nfnetlink_queue.h")
    assert uapi.check_module(nfq, text, ("nfqnl_msg_types", "nfqnl_attr_type", "nfqnl_msg_config_cmds",
                                         "nfqnl_config_mode", "nfqnl_attr_config")) >= 20
    assert int(re.search(r"NFQA_CFG_F_FAIL_OPEN\s+\(1 << (\d+)\)", text).group(1)) == 0
    assert uapi.define(uapi.header("netfilter/nfnetlink.h"), "NFNL_SUBSYS_QUEUE") == nfq.NFNL_SUBSYS_QUEUE == 3


# -- backend choice and the verdict contract (no kernel: the socket is stood in for)


def test_unknown_backend_is_named(monkeypatch):
    with pytest.raises(QueueUnavailable, match="'kernel'"):
        PacketQueue(0, lambda p, v, m: v(None, True), backend="kernel")
    monkeypatch.setenv("SIPALG_QUEUE_BACKEND", "nope")
    with pytest.raises(QueueUnavailable, match="SIPALG_QUEUE_BACKEND"):
        PacketQueue(0, lambda p, v, m: v(None, True))


class _Queue:
    """Stands in for NfQueue's socket side: hands out packets, records verdicts."""

    def __init__(self, packets):
        self.packets = packets
        self.verdicts = []
        self.flushed = 0
        self.counters = {"enobufs": 0, "errors": 0, "send_errors": 0}
        self.last_error = None

    def receive(self, limit=64):
        out, self.packets = self.packets[:limit], self.packets[limit:]
        return out

    def verdict(self, packet_id, accept=True, payload=None):
        nfq.verdict_message(0, packet_id, accept, payload)     # the real encoder: refuses what the kernel would
        self.verdicts.append((packet_id, accept, payload))

    def flush(self):
        self.flushed = len(self.verdicts)


def _glue(packets, callback):
    g = _Netlink.__new__(_Netlink)
    g._callback, g._q, g._unseen = callback, _Queue(packets), 0
    g._reported, g._last_report = dict(g._q.counters), 0.0
    return g


def test_every_packet_gets_exactly_one_verdict_even_when_the_callback_fails():
    metas = []

    def cb(payload, verdict, meta):
        metas.append((meta.indev, meta.outdev, meta.mark))
        if payload == b"rewrite":
            verdict(b"REWRITTEN", True)
        elif payload == b"drop":
            verdict(None, False)
        elif payload == b"twice":
            verdict(None, True)
            verdict(None, False)                   # a bug: refused, the first verdict stands
        elif payload == b"boom":
            raise RuntimeError("engine bug")
        elif payload == b"huge":
            verdict(b"x" * 70000, True)            # too big for one attribute: the original goes instead
        # b"silent": forgets its verdict
    pk = [nfq.Packet(0, i, 0x800, 1, p, indev=i + 1) for i, p in enumerate([b"rewrite", b"drop", b"twice", b"boom",
                                                                             b"silent", b"huge"])]
    pk.append(nfq.Packet(0, 6, 0x800, 1, b"cut", cap_len=900))
    g = _glue(pk, cb)
    g.poll()
    assert g._q.verdicts == [(0, True, b"REWRITTEN"), (1, False, None), (2, True, None), (3, True, None),
                             (4, True, None), (5, True, None), (6, True, None)]
    assert g.counters["unseen"] == 1
    assert g._q.flushed == 7                        # and they were sent before poll() returned
    assert metas[0] == (1, 0, None) and [m[0] for m in metas] == [1, 2, 3, 4, 5, 6]


def test_the_first_packets_verdict_is_sent_before_its_callback_returns_the_rest_batch():
    sent_when = []

    def cb(payload, verdict, meta):
        verdict(None, True)
        sent_when.append(g._q.flushed)             # what had gone out by the time the callback went on

    g = _glue([nfq.Packet(0, i, 0x800, 1, b"p%d" % i) for i in range(4)], cb)
    g.poll()
    assert sent_when == [1, 1, 1, 1]                # the first at once; the backlog waited for its batch
    assert g._q.flushed == 4
