"""NFQUEUE spoken directly over a netlink socket: stdlib only (socket, struct).

OpenWrt's feed has no Python NFQUEUE binding and python3-light has no ctypes,
so the daemon speaks the nfnetlink_queue protocol itself.  The message
encoders and decoders are pure (bytes in, bytes or values out) so they are
tested without root; `NfQueue` is the thin layer over a NetlinkSocket.

Layouts and numbers are linux/netfilter/nfnetlink_queue.h's (messages,
attributes, config structs); what every netlink client shares is in
alg/kernel/netlink.py.  Every nfqueue struct and u32 attribute is big-endian.

One recv gives one queued packet: the kernel unicasts each as its own skb,
and a netlink recvmsg returns one skb.  What batches is the rest: a poll
drains every packet waiting, and their verdicts go back together, runs of
plain accepts as one NFQNL_MSG_VERDICT_BATCH and the others as single
verdicts, all in as few sendmsg calls as the send buffer allows.
"""

from __future__ import annotations

import collections
import errno
import socket
import struct
from typing import Deque, List, Optional, Union

from alg.kernel.netlink import (  # noqa: F401  (re-exported: the names this protocol's users know)
    NETLINK_NETFILTER, NFNL_SUBSYS_QUEUE, NFNETLINK_V0, NLA_HDR, NLA_TYPE_MASK, NLM_F_ACK, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_HDR, NLMSG_NOOP, NLMSG_OVERRUN, NFGEN, RECV_BUFFER, Ack, NetlinkError,
    NetlinkSocket, Overrun, align4, attr, iter_messages, nfgenmsg, nfnl_type, parse_attrs, parse_error)
from alg.kernel import netlink as nl

# linux/netfilter/nfnetlink_queue.h: enum nfqnl_msg_types
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3

# enum nfqnl_attr_type
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_TIMESTAMP = 4
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_HWADDR = 9
NFQA_PAYLOAD = 10
NFQA_CAP_LEN = 13
NFQA_SKB_INFO = 14

# enum nfqnl_msg_config_cmds
NFQNL_CFG_CMD_NONE = 0
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_CFG_CMD_PF_BIND = 3
NFQNL_CFG_CMD_PF_UNBIND = 4

# enum nfqnl_config_mode
NFQNL_COPY_NONE = 0
NFQNL_COPY_META = 1
NFQNL_COPY_PACKET = 2

# enum nfqnl_attr_config
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5

NFQA_CFG_F_FAIL_OPEN = 1 << 0
NFQA_CFG_F_CONNTRACK = 1 << 1
NFQA_CFG_F_GSO = 1 << 2

# linux/netfilter.h
NF_DROP = 0
NF_ACCEPT = 1

CMD = struct.Struct("!BxH")               # nfqnl_msg_config_cmd: command, _pad, pf
PARAMS = struct.Struct("!IB")             # nfqnl_msg_config_params (packed): copy_range, copy_mode
VERDICT_HDR = struct.Struct("!II")        # nfqnl_msg_verdict_hdr: verdict, id
PACKET_HDR = struct.Struct("!IHB")        # nfqnl_msg_packet_hdr (packed): packet_id, hw_protocol, hook
U32 = struct.Struct("!I")

MAX_COPY_RANGE = 0xFFFF                   # the kernel clamps to 0xffff - NLA_HDRLEN: 65531 bytes of packet


def msg_type(nfq_type: int) -> int:
    return nfnl_type(NFNL_SUBSYS_QUEUE, nfq_type)


PACKET_TYPE = msg_type(NFQNL_MSG_PACKET)


# -- encoding


def nfq_message(nfq_type: int, queue_num: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0,
                family: int = socket.AF_UNSPEC) -> bytes:
    """nlmsghdr + nfgenmsg (res_id = queue number) + attributes."""
    if not 0 <= queue_num <= 0xFFFF:
        raise ValueError("NFQUEUE number %r out of range 0-65535" % (queue_num,))
    return nl.nfnl_message(NFNL_SUBSYS_QUEUE, nfq_type, family, attrs, flags, seq, res_id=queue_num)


def config_cmd(queue_num: int, command: int, pf: int = 0, seq: int = 0, ack: bool = True) -> bytes:
    """NFQNL_MSG_CONFIG carrying NFQA_CFG_CMD (BIND/UNBIND the queue; PF_BIND/PF_UNBIND take queue 0)."""
    return nfq_message(NFQNL_MSG_CONFIG, queue_num, attr(NFQA_CFG_CMD, CMD.pack(command, pf)),
                       NLM_F_REQUEST | (NLM_F_ACK if ack else 0), seq)


def config_params(queue_num: int, copy_range: int = MAX_COPY_RANGE, copy_mode: int = NFQNL_COPY_PACKET,
                  maxlen: Optional[int] = None, seq: int = 0, ack: bool = True) -> bytes:
    """NFQNL_MSG_CONFIG with NFQA_CFG_PARAMS (copy mode and range), and the queue length if given."""
    attrs = attr(NFQA_CFG_PARAMS, PARAMS.pack(copy_range, copy_mode))
    if maxlen is not None:
        attrs += attr(NFQA_CFG_QUEUE_MAXLEN, U32.pack(maxlen))
    return nfq_message(NFQNL_MSG_CONFIG, queue_num, attrs, NLM_F_REQUEST | (NLM_F_ACK if ack else 0), seq)


def config_flags(queue_num: int, flags: int, mask: Optional[int] = None, seq: int = 0, ack: bool = True) -> bytes:
    """NFQNL_MSG_CONFIG setting queue flags; the kernel wants the mask with them (EINVAL otherwise)."""
    attrs = attr(NFQA_CFG_FLAGS, U32.pack(flags)) + attr(NFQA_CFG_MASK, U32.pack(flags if mask is None else mask))
    return nfq_message(NFQNL_MSG_CONFIG, queue_num, attrs, NLM_F_REQUEST | (NLM_F_ACK if ack else 0), seq)


def verdict_message(queue_num: int, packet_id: int, accept: bool, payload: Optional[bytes] = None,
                    seq: int = 0) -> bytes:
    """NFQNL_MSG_VERDICT: accept or drop one packet, replacing its bytes when a payload is given."""
    attrs = attr(NFQA_VERDICT_HDR, VERDICT_HDR.pack(NF_ACCEPT if accept else NF_DROP, packet_id))
    if payload is not None:
        attrs += attr(NFQA_PAYLOAD, bytes(payload))
    return nfq_message(NFQNL_MSG_VERDICT, queue_num, attrs, NLM_F_REQUEST, seq)


def verdict_batch_message(queue_num: int, max_id: int, accept: bool = True, seq: int = 0) -> bytes:
    """NFQNL_MSG_VERDICT_BATCH: one verdict for EVERY packet still queued with an id up to `max_id`
    (nfqnl_recv_verdict_batch walks the queue in order and stops at the first later id); no payload."""
    attrs = attr(NFQA_VERDICT_HDR, VERDICT_HDR.pack(NF_ACCEPT if accept else NF_DROP, max_id))
    return nfq_message(NFQNL_MSG_VERDICT_BATCH, queue_num, attrs, NLM_F_REQUEST, seq)


# -- decoding


class Packet:
    """One NFQNL_MSG_PACKET: the id to give a verdict for, the packet (from the IP header), and its
    metadata: in/out interface index (0 when absent), mark (None when absent), hook."""

    __slots__ = ("queue_num", "packet_id", "hw_protocol", "hook", "payload", "cap_len", "mark", "indev",
                 "outdev")

    def __init__(self, queue_num: int, packet_id: int, hw_protocol: int, hook: int,
                 payload: Optional[bytes], cap_len: Optional[int] = None, mark: Optional[int] = None,
                 indev: int = 0, outdev: int = 0):
        self.queue_num = queue_num
        self.packet_id = packet_id
        self.hw_protocol = hw_protocol
        self.hook = hook
        self.payload = payload
        self.cap_len = cap_len
        self.mark = mark
        self.indev = indev
        self.outdev = outdev

    @property
    def truncated(self) -> bool:
        """True when the kernel copied less than the whole packet (rewriting it would cut it)."""
        return self.payload is None or (self.cap_len is not None and self.cap_len > len(self.payload))

    def __repr__(self) -> str:
        return "Packet(queue=%d, id=%d, %s bytes)" % (self.queue_num, self.packet_id,
                                                      "no" if self.payload is None else len(self.payload))


def parse_packet(body: bytes) -> Packet:
    """The body (nfgenmsg + attributes) of an NFQNL_MSG_PACKET."""
    return _packet(body, 0, len(body))


def _packet(buf, at: int, end: int) -> Packet:
    """The NFQNL_MSG_PACKET body in buf[at:end]: the hot path, one walk over the attributes
    in locals, slicing only the payload."""
    if end - at < NFGEN.size:
        raise ValueError("NFQUEUE packet message too short: %d bytes" % (end - at))
    queue_num = NFGEN.unpack_from(buf, at)[2]
    hdr = payload = cap_len = mark = None
    indev = outdev = 0
    u32 = U32.unpack_from
    nla = NLA_HDR.unpack_from
    off = at + NFGEN.size
    while off + 4 <= end:
        length, atype = nla(buf, off)
        if length < 4 or off + length > end:
            raise ValueError("bad netlink attribute at offset %d: length %d, %d bytes left"
                             % (off - at, length, end - off))
        atype &= NLA_TYPE_MASK
        if atype == NFQA_PAYLOAD:
            payload = bytes(buf[off + 4:off + length])
        elif length >= 8:
            if atype == NFQA_PACKET_HDR:
                if length >= 4 + PACKET_HDR.size:
                    hdr = PACKET_HDR.unpack_from(buf, off + 4)
            elif atype == NFQA_IFINDEX_INDEV:
                indev = u32(buf, off + 4)[0]
            elif atype == NFQA_IFINDEX_OUTDEV:
                outdev = u32(buf, off + 4)[0]
            elif atype == NFQA_MARK:
                mark = u32(buf, off + 4)[0]
            elif atype == NFQA_CAP_LEN:
                cap_len = u32(buf, off + 4)[0]
        off += (length + 3) & ~3
    if hdr is None:
        raise ValueError("NFQUEUE packet message without a packet header (NFQA_PACKET_HDR)")
    return Packet(queue_num, hdr[0], hdr[1], hdr[2], payload, cap_len, mark, indev, outdev)


_MSG_HEAD = struct.Struct("=IH")           # nlmsghdr's len and type


def packet_datagram(buf) -> Optional[Packet]:
    """The packet, when a received datagram is just one NFQNL_MSG_PACKET (how the kernel sends
    each); None for anything else (decode() reads those)."""
    n = len(buf)
    if n < NLMSG_HDR.size:
        return None
    length, mtype = _MSG_HEAD.unpack_from(buf)
    if mtype != PACKET_TYPE or length < NLMSG_HDR.size or length > n or n - length > 3:
        return None
    return _packet(buf, NLMSG_HDR.size, length)


Event = Union[Packet, Ack, NetlinkError]


def decode(buf: bytes) -> List[Event]:
    """Everything in one received buffer: packets, acks and errors (returned, not raised)."""
    out: List[Event] = []
    for mtype, flags, seq, _pid, body in iter_messages(buf):
        if mtype == NLMSG_ERROR:
            out.append(parse_error(body, seq, flags))
        elif mtype == PACKET_TYPE:
            out.append(parse_packet(body))
        # NOOP, DONE, OVERRUN and anything else on this socket: not ours to handle
    return out


def coalesce(queue_num: int, outstanding: Deque[int], verdicts: dict, next_seq, out: List[bytes]) -> int:
    """Turn buffered verdicts into messages (appended to `out`, in packet order); returns the batches.

    `outstanding` holds the ids received and not yet answered, oldest
    first; `verdicts` maps id -> an encoded single verdict, or None for a
    plain accept.  A run of plain accepts starting at the oldest id still
    held becomes one VERDICT_BATCH for its last id: the batch covers every
    queued id up to it, and every older one was answered before it in the
    same stream.  Verdicts given behind a packet still unanswered go singly.
    Both containers are emptied of what was answered.
    """
    batches = 0
    run = None
    while outstanding and outstanding[0] in verdicts:
        pid = outstanding.popleft()
        m = verdicts.pop(pid)
        if m is None:
            run = pid
            continue
        if run is not None:
            out.append(verdict_batch_message(queue_num, run, True, next_seq()))
            batches += 1
            run = None
        out.append(m)
    if run is not None:
        out.append(verdict_batch_message(queue_num, run, True, next_seq()))
        batches += 1
    for pid, m in verdicts.items():                 # out of order: behind a packet still held
        out.append(m if m is not None else verdict_message(queue_num, pid, True, None, next_seq()))
        try:
            outstanding.remove(pid)
        except ValueError:
            pass
    verdicts.clear()
    return batches


# -- the socket


class NfQueue:
    """One bound NFQUEUE on a non-blocking netlink socket.

    `receive()` drains what is waiting and returns the packets; every packet
    needs exactly one `verdict()`, which is buffered until `flush()` (and
    `receive()` flushes first, so nothing is held across polls).  ENOBUFS
    (the kernel could not queue a packet to us: with fail-open it accepted
    it unchanged) and late errors are counted, not raised, so no burst stops
    the ALG.
    """

    def __init__(self, queue_num: int, copy_range: int = MAX_COPY_RANGE, maxlen: Optional[int] = 4096,
                 fail_open: bool = True, rcvbuf: int = 8 << 20, sndbuf: int = 1 << 20, timeout: float = 2.0):
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError("NFQUEUE number %r out of range 0-65535" % (queue_num,))
        self.queue_num = queue_num
        self.counters = {"enobufs": 0, "errors": 0, "send_errors": 0, "batches": 0, "sweeps": 0}
        self.last_error: Optional[str] = None
        self.fail_open = False
        self._pending: List[Packet] = []                # packets that arrived while a config request waited
        self._outstanding: Deque[int] = collections.deque()   # ids received, verdict not yet sent, in id order
        self._verdicts: dict = {}                       # id -> encoded single verdict, or None (plain accept)
        self._unsent: List[bytes] = []                  # verdicts a failed send left; sent again first
        self._blind = False                             # a datagram failed to decode: a packet may be held unseen
        self._last_id: Optional[int] = None
        self._blind_since: Optional[int] = None
        # a plain accept is this prefix and its verdict header (seq 0: no ack is asked for)
        self._accept_head = verdict_message(queue_num, 0, True)[:-VERDICT_HDR.size]
        self.nl = NetlinkSocket(NETLINK_NETFILTER, rcvbuf=rcvbuf, sndbuf=sndbuf, timeout=timeout,
                                on_other=self._on_other)
        try:
            self._setup(copy_range, maxlen, fail_open)
        except BaseException:
            self.nl.close()
            raise

    def _setup(self, copy_range: int, maxlen: Optional[int], fail_open: bool) -> None:
        q = self.queue_num
        # kernels before 3.8 need the address family bound first; newer ones accept and ignore both
        self._config(lambda seq: config_cmd(0, NFQNL_CFG_CMD_PF_UNBIND, socket.AF_INET, seq), "PF_UNBIND",
                     check=False)
        self._config(lambda seq: config_cmd(0, NFQNL_CFG_CMD_PF_BIND, socket.AF_INET, seq), "PF_BIND")
        self._config(lambda seq: config_cmd(q, NFQNL_CFG_CMD_BIND, 0, seq), "BIND queue %d" % q)
        self._config(lambda seq: config_params(q, copy_range, NFQNL_COPY_PACKET, maxlen, seq),
                     "copy mode for queue %d" % q)
        if fail_open:
            try:
                self._config(lambda seq: config_flags(q, NFQA_CFG_F_FAIL_OPEN, seq=seq), "FAIL_OPEN flag")
                self.fail_open = True
            except NetlinkError as e:                    # kernels before 3.6: still usable
                self.last_error = str(e)

    def _config(self, build, what: str, check: bool = True) -> None:
        """A config request and its ack; packets arriving meanwhile are kept for receive()."""
        for attempt in (0, 1):
            seq = self.nl.seq()
            try:
                err = self.nl.transact([build(seq)], [seq])[seq]
                break
            except Overrun:                             # a burst of packets cost us the ack: ask again
                self.counters["enobufs"] += 1
                if attempt:
                    raise
        if err is not None and check:
            busy = err.errno in (errno.EPERM, errno.EBUSY) and what.startswith("BIND")
            raise err.named("NFQUEUE %s" % what, "another process has this queue" if busy else "")

    def _on_other(self, mtype: int, flags: int, seq: int, body: bytes) -> None:
        try:
            if mtype == PACKET_TYPE:
                p = parse_packet(body)
                self._outstanding.append(p.packet_id)
                self._last_id = p.packet_id
                self._pending.append(p)
            elif mtype == NLMSG_ERROR:
                ev = parse_error(body, seq, flags)
                if isinstance(ev, NetlinkError):
                    self._count_error(ev)
        except ValueError as e:
            self._undecodable(e)

    def _count_error(self, e: NetlinkError) -> None:
        self.counters["errors"] += 1
        self.last_error = str(e)

    def fileno(self) -> int:
        return self.nl.fileno()

    def receive(self, limit: int = 64) -> List[Packet]:
        """The packets waiting now (at most about `limit`), without blocking; buffered verdicts go first."""
        self.flush()
        out, self._pending = self._pending, []
        s = self.nl
        while len(out) < limit:
            try:
                buf = s.recv()
            except Overrun:
                self.counters["enobufs"] += 1
                continue
            except ValueError as e:                      # over-long datagram: not from a sane kernel
                self._undecodable(e)
                continue
            if buf is None:
                break
            try:
                p = packet_datagram(buf)
                if p is not None:
                    self._outstanding.append(p.packet_id)
                    self._last_id = p.packet_id
                    out.append(p)
                    continue
                events = decode(buf)
            except ValueError as e:
                self._undecodable(e)
                continue
            for ev in events:
                if isinstance(ev, Packet):
                    self._outstanding.append(ev.packet_id)
                    self._last_id = ev.packet_id
                    out.append(ev)
                elif isinstance(ev, NetlinkError):
                    self._count_error(ev)
        return out

    def _undecodable(self, e: Exception) -> None:
        self.counters["errors"] += 1
        self.last_error = "undecodable netlink message: %s" % e
        self._blind = True
        self._blind_since = self._last_id

    def verdict(self, packet_id: int, accept: bool = True, payload: Optional[bytes] = None) -> None:
        """Buffer the verdict for one packet; ValueError (nothing buffered) if the kernel could not take it."""
        if accept and payload is None:
            self._verdicts[packet_id] = None
        else:
            self._verdicts[packet_id] = verdict_message(self.queue_num, packet_id, accept, payload, self.nl.seq())

    def flush(self) -> int:
        """Send the buffered verdicts (see coalesce()); returns how many messages went out."""
        v = self._verdicts
        if not self._unsent and not self._blind:
            if not v:
                return 0
            o = self._outstanding
            if len(v) == 1 and len(o) == 1 and o[0] in v:   # one packet, its verdict: the usual case
                pid = o[0]
                m = v[pid]
                if m is None:
                    m = self._accept_head + VERDICT_HDR.pack(NF_ACCEPT, pid)
                try:
                    self.nl.send(m)
                except (OSError, ValueError) as e:
                    self.counters["send_errors"] += 1
                    self.last_error = "verdicts not sent (kept for the next try): %s" % e
                    self._unsent = [m]
                    v.clear()
                    o.clear()
                    return 0
                v.clear()
                o.clear()
                return 1
        msgs = self._unsent
        batches = coalesce(self.queue_num, self._outstanding, self._verdicts, self.nl.seq, msgs)
        self.counters["batches"] += batches
        if self._blind and not self._outstanding and self._last_id not in (None, self._blind_since):
            # an undecodable packet may still be held, older than the newest id seen: accept all up to that
            msgs.append(verdict_batch_message(self.queue_num, self._last_id, True, self.nl.seq()))
            self.counters["sweeps"] += 1
            self._blind = False
        self._unsent = []
        sent = 0
        for data, n in self.nl.pack(msgs):
            try:
                self.nl.send(data)
            except (OSError, ValueError) as e:          # ENOBUFS, a full socket: try again at the next flush
                self.counters["send_errors"] += 1
                self.last_error = "verdicts not sent (kept for the next try): %s" % e
                self._unsent = msgs[sent:]
                break
            sent += n
        return sent

    def close(self) -> None:
        """Unbind (the kernel would also on close) and close the socket; held packets are dropped."""
        try:
            self.flush()
            self.nl.send(config_cmd(self.queue_num, NFQNL_CFG_CMD_UNBIND, 0, self.nl.seq(), ack=False))
        except (OSError, ValueError):
            pass
        self.nl.close()
