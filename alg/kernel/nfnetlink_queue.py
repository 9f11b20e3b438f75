"""NFQUEUE spoken directly over a netlink socket: stdlib only (socket, struct, os).

OpenWrt's feed has no Python NFQUEUE binding and python3-light has no ctypes,
so the daemon speaks the nfnetlink_queue protocol itself.  The message
encoders and decoders are pure (bytes in, bytes or values out) so they are
tested without root; `NfQueue` is the thin socket around them.

Layouts and numbers are the kernel UAPI's: linux/netlink.h (nlmsghdr, nlattr,
NLMSG_ERROR), linux/netfilter/nfnetlink.h (nfgenmsg, NFNL_SUBSYS_QUEUE) and
linux/netfilter/nfnetlink_queue.h (messages, attributes, config structs).
Netlink headers are host byte order; nfgenmsg.res_id and every nfqueue
struct and u32 attribute are big-endian.
"""

from __future__ import annotations

import errno as _errno
import os
import select
import socket
import struct
import time
from typing import Dict, Iterator, List, Optional, Tuple, Union

# linux/netlink.h
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLMSG_NOOP = 0x1
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLMSG_OVERRUN = 0x4
NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NETLINK_CAP_ACK = 10
SO_RCVBUFFORCE = 33                       # asm-generic/socket.h: root may exceed rmem_max

# linux/netfilter/nfnetlink.h
NFNETLINK_V0 = 0
NFNL_SUBSYS_QUEUE = 3

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

NLMSG_HDR = struct.Struct("=IHHII")       # nlmsghdr: len, type, flags, seq, pid (host order)
NLA_HDR = struct.Struct("=HH")            # nlattr: len, type (host order)
NFGEN = struct.Struct("!BBH")             # nfgenmsg: family, version, res_id (big-endian)
CMD = struct.Struct("!BxH")               # nfqnl_msg_config_cmd: command, _pad, pf
PARAMS = struct.Struct("!IB")             # nfqnl_msg_config_params (packed): copy_range, copy_mode
VERDICT_HDR = struct.Struct("!II")        # nfqnl_msg_verdict_hdr: verdict, id
PACKET_HDR = struct.Struct("!IHB")        # nfqnl_msg_packet_hdr (packed): packet_id, hw_protocol, hook
U32 = struct.Struct("!I")

MAX_COPY_RANGE = 0xFFFF                   # the kernel clamps to 0xffff - NLA_HDRLEN
RECV_BUFFER = 0xFFFF + 8192               # one full-size packet plus its netlink headers


def align4(n: int) -> int:
    return (n + 3) & ~3


def msg_type(nfq_type: int) -> int:
    """nlmsg_type of an nfnetlink queue message: subsystem in the high byte, operation in the low."""
    return (NFNL_SUBSYS_QUEUE << 8) | nfq_type


# -- encoding


def attr(atype: int, data: bytes) -> bytes:
    """One netlink attribute, zero-padded to 4 bytes (nla_len excludes the padding)."""
    n = NLA_HDR.size + len(data)
    if n > 0xFFFF:
        raise ValueError("netlink attribute %d too long: %d bytes" % (atype, len(data)))
    return NLA_HDR.pack(n, atype) + data + b"\0" * (align4(n) - n)


def nfq_message(nfq_type: int, queue_num: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0,
                family: int = socket.AF_UNSPEC) -> bytes:
    """nlmsghdr + nfgenmsg (res_id = queue number) + attributes."""
    if not 0 <= queue_num <= 0xFFFF:
        raise ValueError("NFQUEUE number %r out of range 0-65535" % (queue_num,))
    body = NFGEN.pack(family, NFNETLINK_V0, queue_num) + attrs
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type(nfq_type), flags, seq, 0) + body


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


# -- decoding


class NetlinkError(OSError):
    """The kernel refused a request (NLMSG_ERROR with a negative error code)."""

    def __init__(self, code: int, seq: int, what: str = "netlink request", hint: str = ""):
        name = _errno.errorcode.get(code, "errno %d" % code)
        super().__init__(code, "%s failed: %s (%s)%s" % (what, name, os.strerror(code), hint and ": " + hint))
        self.name = name
        self.seq = seq


class Ack:
    """NLMSG_ERROR with error 0: the request with this sequence number succeeded."""

    def __init__(self, seq: int):
        self.seq = seq

    def __repr__(self) -> str:
        return "Ack(seq=%d)" % self.seq


class Packet:
    """One NFQNL_MSG_PACKET: the id to give a verdict for, and the packet (from the IP header)."""

    def __init__(self, queue_num: int, packet_id: int, hw_protocol: int, hook: int,
                 payload: Optional[bytes], cap_len: Optional[int] = None, mark: int = 0,
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


def iter_messages(buf: bytes) -> Iterator[Tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, pid, body) for each netlink message in a received buffer.

    Bodies are slices of `buf`: views (no copy) when it is a memoryview.
    """
    off = 0
    n = len(buf)
    while off + NLMSG_HDR.size <= n:
        length, mtype, flags, seq, pid = NLMSG_HDR.unpack_from(buf, off)
        if length < NLMSG_HDR.size or off + length > n:
            raise ValueError("bad netlink message at offset %d: length %d, %d bytes left" % (off, length, n - off))
        yield mtype, flags, seq, pid, buf[off + NLMSG_HDR.size:off + length]
        off += align4(length)


def parse_attrs(data: bytes) -> Dict[int, bytes]:
    """Attribute type (flags masked off) -> value (a slice of `data`), for a run of netlink attributes."""
    out: Dict[int, bytes] = {}
    off = 0
    n = len(data)
    while off + NLA_HDR.size <= n:
        length, atype = NLA_HDR.unpack_from(data, off)
        if length < NLA_HDR.size or off + length > n:
            raise ValueError("bad netlink attribute at offset %d: length %d, %d bytes left" % (off, length, n - off))
        out[atype & NLA_TYPE_MASK] = data[off + NLA_HDR.size:off + length]
        off += align4(length)
    return out


_U32_FIELDS = {NFQA_CAP_LEN: "cap_len", NFQA_MARK: "mark", NFQA_IFINDEX_INDEV: "indev",
               NFQA_IFINDEX_OUTDEV: "outdev"}


def parse_packet(body: bytes) -> Packet:
    """The body (nfgenmsg + attributes) of an NFQNL_MSG_PACKET.

    The hot path: one walk over the attributes, slicing only the payload.
    """
    n = len(body)
    if n < NFGEN.size:
        raise ValueError("NFQUEUE packet message too short: %d bytes" % n)
    queue_num = NFGEN.unpack_from(body)[2]
    hdr = None
    payload = None
    u32s = {}
    off = NFGEN.size
    while off + 4 <= n:
        length, atype = NLA_HDR.unpack_from(body, off)
        if length < 4 or off + length > n:
            raise ValueError("bad netlink attribute at offset %d: length %d, %d bytes left" % (off, length, n - off))
        atype &= NLA_TYPE_MASK
        if atype == NFQA_PAYLOAD:
            payload = bytes(body[off + 4:off + length])
        elif atype == NFQA_PACKET_HDR and length >= 4 + PACKET_HDR.size:
            hdr = PACKET_HDR.unpack_from(body, off + 4)
        elif atype in _U32_FIELDS and length >= 8:
            u32s[_U32_FIELDS[atype]] = U32.unpack_from(body, off + 4)[0]
        off += (length + 3) & ~3
    if hdr is None:
        raise ValueError("NFQUEUE packet message without a packet header (NFQA_PACKET_HDR)")
    return Packet(queue_num, hdr[0], hdr[1], hdr[2], payload, **u32s)


def parse_error(body: bytes, seq: int) -> Union[Ack, NetlinkError]:
    """NLMSG_ERROR body (struct nlmsgerr: int error, then the offending header): Ack or the error."""
    if len(body) < 4:
        raise ValueError("NLMSG_ERROR too short: %d bytes" % len(body))
    code = -struct.unpack_from("=i", body)[0]
    if len(body) >= 4 + NLMSG_HDR.size:            # the request's own sequence number
        seq = NLMSG_HDR.unpack_from(body, 4)[3]
    if code == 0:
        return Ack(seq)
    return NetlinkError(code, seq)


Event = Union[Packet, Ack, NetlinkError]


def decode(buf: bytes) -> List[Event]:
    """Everything in one received buffer: packets, acks and errors (returned, not raised)."""
    out: List[Event] = []
    for mtype, _flags, seq, _pid, body in iter_messages(buf):
        if mtype == NLMSG_ERROR:
            out.append(parse_error(body, seq))
        elif mtype == msg_type(NFQNL_MSG_PACKET):
            out.append(parse_packet(body))
        elif mtype in (NLMSG_NOOP, NLMSG_DONE, NLMSG_OVERRUN):
            continue
        # anything else on this socket is not ours to handle; skip it
    return out


# -- the socket


class NfQueue:
    """One bound NFQUEUE on a non-blocking netlink socket.

    `receive()` drains what is waiting and returns the packets; every packet
    needs exactly one `verdict()`.  ENOBUFS (the kernel could not queue a
    message to us: with fail-open those packets were accepted unchanged) and
    late errors are counted, not raised, so one burst never stops the ALG.
    """

    def __init__(self, queue_num: int, copy_range: int = MAX_COPY_RANGE, maxlen: Optional[int] = 4096,
                 fail_open: bool = True, rcvbuf: int = 4 << 20, timeout: float = 2.0):
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError("NFQUEUE number %r out of range 0-65535" % (queue_num,))
        self.queue_num = queue_num
        self.timeout = timeout
        self.counters = {"enobufs": 0, "errors": 0, "send_errors": 0}
        self.last_error: Optional[str] = None
        self.fail_open = False
        self._seq = int(time.time()) & 0x7FFFFFFF
        self._pending: List[Packet] = []
        self._buf = bytearray(RECV_BUFFER)               # reused: one recv never holds more than a packet
        self._view = memoryview(self._buf)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._setup(copy_range, maxlen, fail_open, rcvbuf)
        except BaseException:
            self.sock.close()
            raise

    def _setup(self, copy_range: int, maxlen: Optional[int], fail_open: bool, rcvbuf: int) -> None:
        s = self.sock
        s.bind((0, 0))
        for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # force needs CAP_NET_ADMIN; else capped by rmem_max
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        try:                                             # errors on verdicts need not echo whole packets
            s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:
            pass
        s.setblocking(False)
        q = self.queue_num
        # kernels before 3.8 need the address family bound first; newer ones accept and ignore both
        self._request(config_cmd(0, NFQNL_CFG_CMD_PF_UNBIND, socket.AF_INET, self._next_seq()), "PF_UNBIND",
                      check=False)
        self._request(config_cmd(0, NFQNL_CFG_CMD_PF_BIND, socket.AF_INET, self._next_seq()), "PF_BIND")
        self._request(config_cmd(q, NFQNL_CFG_CMD_BIND, 0, self._next_seq()), "BIND queue %d" % q)
        self._request(config_params(q, copy_range, NFQNL_COPY_PACKET, maxlen, self._next_seq()),
                      "copy mode for queue %d" % q)
        if fail_open:
            try:
                self._request(config_flags(q, NFQA_CFG_F_FAIL_OPEN, seq=self._next_seq()), "FAIL_OPEN flag")
                self.fail_open = True
            except NetlinkError as e:                    # kernels before 3.6: still usable
                self.last_error = str(e)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _request(self, msg: bytes, what: str, check: bool = True) -> None:
        """Send a config request and wait for its ack; packets arriving meanwhile are kept for receive()."""
        seq = NLMSG_HDR.unpack_from(msg)[3]
        self.sock.send(msg)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("NFQUEUE %s: no answer from the kernel in %.1fs" % (what, self.timeout))
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            for ev in self._recv_events():
                if isinstance(ev, Packet):
                    self._pending.append(ev)
                elif ev.seq != seq:
                    if isinstance(ev, NetlinkError):
                        self._count_error(ev)
                elif isinstance(ev, NetlinkError):
                    if not check:
                        return
                    busy = ev.errno in (_errno.EPERM, _errno.EBUSY) and what.startswith("BIND")
                    raise NetlinkError(ev.errno, seq, "NFQUEUE %s" % what,
                                       "another process has this queue" if busy else "")
                else:
                    return

    def _recv_events(self) -> List[Event]:
        try:
            n = self.sock.recv_into(self._buf)
        except BlockingIOError:
            return []
        except OSError as e:
            if e.errno == _errno.ENOBUFS:
                self.counters["enobufs"] += 1
                return []
            raise
        return decode(self._view[:n])

    def _count_error(self, e: NetlinkError) -> None:
        self.counters["errors"] += 1
        self.last_error = str(e)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, limit: int = 256) -> List[Packet]:
        """The packets waiting now (at most about `limit`), without blocking."""
        out, self._pending = self._pending, []
        while len(out) < limit:
            try:
                n = self.sock.recv_into(self._buf)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno != _errno.ENOBUFS:
                    raise
                self.counters["enobufs"] += 1
                continue
            try:
                events = decode(self._view[:n])
            except ValueError as e:                     # not from a sane kernel; keep going
                self.counters["errors"] += 1
                self.last_error = "undecodable netlink message: %s" % e
                continue
            for ev in events:
                if isinstance(ev, Packet):
                    out.append(ev)
                elif isinstance(ev, NetlinkError):
                    self._count_error(ev)
        return out

    def verdict(self, packet_id: int, accept: bool = True, payload: Optional[bytes] = None) -> None:
        msg = verdict_message(self.queue_num, packet_id, accept, payload, self._next_seq())
        for attempt in (0, 1):
            try:
                self.sock.send(msg)
                return
            except (BlockingIOError, InterruptedError) as e:
                err: OSError = e
            except OSError as e:
                if e.errno != _errno.ENOBUFS:
                    raise
                err = e
            if attempt == 0:
                select.select([], [self.sock], [], 0.05)
        self.counters["send_errors"] += 1
        self.last_error = "verdict for packet %d not sent: %s" % (packet_id, err)

    def close(self) -> None:
        """Unbind (the kernel would also on close) and close the socket; queued packets are dropped."""
        try:
            self.sock.send(config_cmd(self.queue_num, NFQNL_CFG_CMD_UNBIND, 0, self._next_seq(), ack=False))
        except OSError:
            pass
        self.sock.close()
