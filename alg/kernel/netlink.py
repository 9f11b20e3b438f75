"""Netlink as every kernel client here speaks it: stdlib only (socket, struct, select).

OpenWrt's python3-light has no ctypes and the feed no pyroute2, so the
daemon packs its own messages.  This module holds what nfnetlink_queue,
nf_tables, ctnetlink and rtnetlink share: message and attribute encoding
(nested too), decoding of received buffers, acks and errors with the
kernel's extended-ack text, and one persistent socket that numbers its
requests, matches acks by sequence number, runs dumps to NLMSG_DONE and
joins multicast groups.

Layouts are linux/netlink.h's (nlmsghdr, nlattr, nlmsgerr) and
linux/netfilter/nfnetlink.h's (nfgenmsg).  Netlink headers are host byte
order; nfgenmsg.res_id is big-endian.
"""

from __future__ import annotations

import errno as _errno
import os
import select
import socket
import struct
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

# linux/netlink.h: protocols
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12

# nlmsg_flags
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP_INTR = 0x10              # the dump was interrupted by a change: its content may be inconsistent
NLM_F_DUMP_FILTERED = 0x20
NLM_F_ROOT = 0x100                  # GET requests
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100               # NEW requests
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_CAPPED = 0x100                # NLMSG_ERROR: only the request's header is echoed
NLM_F_ACK_TLVS = 0x200              # NLMSG_ERROR: extended-ack attributes follow

# message types
NLMSG_NOOP = 0x1
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLMSG_OVERRUN = 0x4
NLMSG_MIN_TYPE = 0x10

# enum nlmsgerr_attrs
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2

NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

# socket options (SOL_NETLINK)
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_NO_ENOBUFS = 5
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_SNDBUFFORCE = 32                 # asm-generic/socket.h: root may exceed wmem_max/rmem_max
SO_RCVBUFFORCE = 33

# linux/netfilter/nfnetlink.h
NFNETLINK_V0 = 0
NFNL_SUBSYS_CTNETLINK = 1
NFNL_SUBSYS_QUEUE = 3
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = NLMSG_MIN_TYPE
NFNL_MSG_BATCH_END = NLMSG_MIN_TYPE + 1
NFNLGRP_NFTABLES = 7

NLMSG_HDR = struct.Struct("=IHHII")       # nlmsghdr: len, type, flags, seq, pid (host order)
NLA_HDR = struct.Struct("=HH")            # nlattr: len, type (host order)
NFGEN = struct.Struct("!BBH")             # nfgenmsg: family, version, res_id (big-endian)
ERRNO = struct.Struct("=i")               # nlmsgerr.error (negative errno)
BE16 = struct.Struct("!H")
BE32 = struct.Struct("!I")
BE64 = struct.Struct("!Q")
U32 = struct.Struct("=I")

RECV_BUFFER = 0x10000 + 16384             # a full-size queued packet with its headers; dumps use less


def align4(n: int) -> int:
    return (n + 3) & ~3


# -- encoding


def attr(atype: int, data: bytes) -> bytes:
    """One attribute, zero-padded to 4 bytes (nla_len counts header and data, not the padding)."""
    n = NLA_HDR.size + len(data)
    if n > 0xFFFF:
        raise ValueError("netlink attribute %d too long: %d bytes" % (atype & NLA_TYPE_MASK, len(data)))
    return NLA_HDR.pack(n, atype) + data + b"\0" * (align4(n) - n)


def nested(atype: int, *attrs: bytes) -> bytes:
    """A nested attribute (NLA_F_NESTED set, as strict kernel policies want) holding `attrs`."""
    return attr(atype | NLA_F_NESTED, b"".join(attrs))


def attr_str(atype: int, s: str) -> bytes:
    """NLA_STRING/NLA_NUL_STRING: the kernel compares names with their NUL."""
    return attr(atype, s.encode() + b"\0")


def attr_u8(atype: int, v: int) -> bytes:
    return attr(atype, bytes((v,)))


def attr_be16(atype: int, v: int) -> bytes:
    return attr(atype, BE16.pack(v))


def attr_be32(atype: int, v: int) -> bytes:
    return attr(atype, BE32.pack(v))


def attr_be64(atype: int, v: int) -> bytes:
    return attr(atype, BE64.pack(v))


def attr_u32(atype: int, v: int) -> bytes:
    """Host-order u32 (NLA_U32 read with nla_get_u32, e.g. CTA_FILTER flags)."""
    return attr(atype, U32.pack(v))


def message(mtype: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """nlmsghdr + payload; the payload's own length keeps the 4-byte alignment of what follows."""
    n = NLMSG_HDR.size + len(payload)
    return NLMSG_HDR.pack(n, mtype, flags, seq, pid) + payload + b"\0" * (align4(n) - n)


def nfgenmsg(family: int, res_id: int = 0, version: int = NFNETLINK_V0) -> bytes:
    return NFGEN.pack(family, version, res_id)


def nfnl_type(subsys: int, op: int) -> int:
    """nlmsg_type of an nfnetlink message: subsystem in the high byte, operation in the low."""
    return (subsys << 8) | op


def nfnl_message(subsys: int, op: int, family: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0,
                 res_id: int = 0) -> bytes:
    return message(nfnl_type(subsys, op), flags, seq, nfgenmsg(family, res_id) + attrs)


# -- decoding


def iter_messages(buf: bytes) -> Iterator[Tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, pid, payload) for each message in a received buffer.

    Payloads are slices of `buf`: views (no copy) when it is a memoryview.
    """
    off = 0
    n = len(buf)
    while off + NLMSG_HDR.size <= n:
        length, mtype, flags, seq, pid = NLMSG_HDR.unpack_from(buf, off)
        if length < NLMSG_HDR.size or off + length > n:
            raise ValueError("bad netlink message at offset %d: length %d, %d bytes left" % (off, length, n - off))
        yield mtype, flags, seq, pid, buf[off + NLMSG_HDR.size:off + length]
        off += align4(length)


def iter_attrs(data: bytes, offset: int = 0) -> Iterator[Tuple[int, bytes]]:
    """(type without flag bits, value) for a run of attributes, in order (repeats kept: lists)."""
    off = offset
    n = len(data)
    while off + NLA_HDR.size <= n:
        length, atype = NLA_HDR.unpack_from(data, off)
        if length < NLA_HDR.size or off + length > n:
            raise ValueError("bad netlink attribute at offset %d: length %d, %d bytes left" % (off, length, n - off))
        yield atype & NLA_TYPE_MASK, data[off + NLA_HDR.size:off + length]
        off += align4(length)


def parse_attrs(data: bytes, offset: int = 0) -> Dict[int, bytes]:
    """Attribute type -> value (the last one of a type wins)."""
    return dict(iter_attrs(data, offset))


def get_str(value: bytes) -> str:
    """An NLA_STRING value: up to its NUL."""
    b = bytes(value)
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode(errors="replace")


def get_be16(value: bytes) -> int:
    return BE16.unpack_from(value)[0]


def get_be32(value: bytes) -> int:
    return BE32.unpack_from(value)[0]


def get_be64(value: bytes) -> int:
    return BE64.unpack_from(value)[0]


def get_u32(value: bytes) -> int:
    return U32.unpack_from(value)[0]


class NetlinkError(OSError):
    """The kernel refused a request: errno, the request's seq, and the kernel's own words when it sent some.

    `kernel_msg` is the extended ack's text (NLMSGERR_ATTR_MSG, with
    NETLINK_EXT_ACK on); `offset` the byte offset of the offending attribute
    in the request (NLMSGERR_ATTR_OFFS), when the kernel pointed at one.
    """

    def __init__(self, code: int, seq: int, what: str = "netlink request", hint: str = "",
                 kernel_msg: str = "", offset: Optional[int] = None):
        name = _errno.errorcode.get(code, "errno %d" % code)
        text = "%s failed: %s (%s)" % (what, name, os.strerror(code))
        if kernel_msg:
            text += ": kernel says %r" % kernel_msg
        if hint:
            text += ": " + hint
        super().__init__(code, text)
        self.name = name
        self.seq = seq
        self.kernel_msg = kernel_msg
        self.offset = offset

    def named(self, what: str, hint: str = "") -> "NetlinkError":
        """The same error, saying which request it was."""
        return NetlinkError(self.errno, self.seq, what, hint, self.kernel_msg, self.offset)


class Ack:
    """NLMSG_ERROR with error 0: the request with this sequence number succeeded."""

    __slots__ = ("seq",)

    def __init__(self, seq: int):
        self.seq = seq

    def __repr__(self) -> str:
        return "Ack(seq=%d)" % self.seq


def parse_error(body: bytes, seq: int, flags: int = 0) -> Union[Ack, NetlinkError]:
    """An NLMSG_ERROR payload (struct nlmsgerr, then the echoed request, then extended-ack TLVs).

    The echoed request's own seq is the one that counts.  With NLM_F_CAPPED
    only its header was echoed; otherwise the whole request (nlmsg_len of it).
    """
    if len(body) < 4:
        raise ValueError("NLMSG_ERROR too short: %d bytes" % len(body))
    code = -ERRNO.unpack_from(body)[0]
    tlv = len(body)
    if len(body) >= 4 + NLMSG_HDR.size:
        req_len, _t, _f, seq, _p = NLMSG_HDR.unpack_from(body, 4)
        tlv = 4 + (NLMSG_HDR.size if flags & NLM_F_CAPPED or code == 0 else align4(req_len))
    if code == 0:
        return Ack(seq)
    msg, offset = "", None
    if flags & NLM_F_ACK_TLVS and tlv < len(body):
        try:
            for t, v in iter_attrs(body, tlv):
                if t == NLMSGERR_ATTR_MSG:
                    msg = get_str(v)
                elif t == NLMSGERR_ATTR_OFFS and len(v) >= 4:
                    offset = get_u32(v)
        except ValueError:
            pass                                        # an error is still an error without its text
    return NetlinkError(code, seq, kernel_msg=msg, offset=offset)


def decode_errors(buf: bytes) -> List[Union[Ack, NetlinkError]]:
    """Just the acks and errors in a buffer."""
    return [parse_error(body, seq, flags) for mtype, flags, seq, _pid, body in iter_messages(buf)
            if mtype == NLMSG_ERROR]


class Overrun(OSError):
    """ENOBUFS on receive: the kernel dropped messages meant for this socket (a multicast
    listener missed events; a dump or a batch of acks is incomplete)."""

    def __init__(self) -> None:
        super().__init__(_errno.ENOBUFS, "netlink socket overrun: the kernel dropped messages for it")


Message = Tuple[int, int, int, bytes]      # type, flags, seq, payload (a copy, safe to keep)


# -- the socket


class NetlinkSocket:
    """One persistent, non-blocking netlink socket.

    The socket owns the sequence numbers: `seq()` hands out the next one for
    a message the caller packs.  `transact()` sends messages in one sendmsg
    and waits for the acks of the sequence numbers given; `dump()` runs a
    NLM_F_DUMP request to NLMSG_DONE; `receive()` returns what is waiting
    without blocking.  Messages that arrive while waiting and belong to no
    awaited request (multicast events, queued packets) go to `on_other`.
    """

    def __init__(self, protocol: int, groups: Sequence[int] = (), rcvbuf: int = 1 << 20,
                 sndbuf: Optional[int] = None, timeout: float = 2.0, ext_ack: bool = True,
                 cap_ack: bool = True, on_other: Optional[Callable[[int, int, int, bytes], None]] = None):
        self.protocol = protocol
        self.timeout = timeout
        self.on_other = on_other
        self.overruns = 0
        self._seq = int(time.time()) & 0x7FFFFFFF
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self.sock.bind((0, 0))
            self.pid = self.sock.getsockname()[0]
            _setbuf(self.sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf)
            if sndbuf:
                _setbuf(self.sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf)
            # netlink_sendmsg refuses a datagram longer than sk_sndbuf - 32 (EMSGSIZE)
            self.max_send = max(4096, self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 64)
            for opt, on in ((NETLINK_EXT_ACK, ext_ack), (NETLINK_CAP_ACK, cap_ack)):
                if on:
                    try:
                        self.sock.setsockopt(SOL_NETLINK, opt, 1)
                    except OSError:
                        pass                            # older kernels: errors without text, or echoing requests
            for g in groups:
                self.subscribe(g)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def subscribe(self, group: int) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def unsubscribe(self, group: int) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, group)

    # -- sending

    def send(self, data: bytes) -> None:
        """One datagram (one or more whole messages).  The kernel handles netlink requests in the
        sender's context, so when this returns their answers are already queued for us."""
        if len(data) > self.max_send:
            raise ValueError("netlink datagram of %d bytes exceeds the socket's %d" % (len(data), self.max_send))
        deadline = None
        while True:
            try:
                self.sock.send(data)
                return
            except InterruptedError:
                continue
            except BlockingIOError:
                if deadline is None:
                    deadline = time.monotonic() + self.timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("netlink send: socket not writable for %.1fs" % self.timeout) from None
                select.select([], [self.sock], [], left)

    def pack(self, msgs: Iterable[bytes]) -> List[Tuple[bytes, int]]:
        """Messages joined into as few datagrams as the send buffer takes: (datagram, messages in it)."""
        out: List[Tuple[bytes, int]] = []
        chunk: List[bytes] = []
        size = 0
        for m in msgs:
            if chunk and size + len(m) > self.max_send:
                out.append((b"".join(chunk), len(chunk)))
                chunk, size = [], 0
            chunk.append(m)
            size += len(m)
        if chunk:
            out.append((b"".join(chunk), len(chunk)))
        return out

    def send_all(self, msgs: Iterable[bytes]) -> None:
        for data, _n in self.pack(msgs):
            self.send(data)

    # -- receiving

    def recv(self) -> Optional[memoryview]:
        """One datagram as a view into the reused buffer (valid until the next recv), or None.

        Raises Overrun on ENOBUFS.  A datagram longer than the buffer (never
        from the kernels we talk to) raises ValueError rather than be misread.
        """
        while True:
            try:
                n = self.sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                return None
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    raise Overrun() from None
                raise
            if n > len(self._buf):
                raise ValueError("netlink datagram of %d bytes truncated to %d" % (n, len(self._buf)))
            return self._view[:n]

    def receive(self, limit: int = 0) -> List[Message]:
        """The messages waiting now (copies), without blocking; at most about `limit` datagrams'
        worth when given.  Overruns are counted in `overruns`, not raised: what arrived after
        one is still handed back."""
        out: List[Message] = []
        n = 0
        while not limit or n < limit:
            try:
                buf = self.recv()
            except Overrun:
                self.overruns += 1
                continue
            if buf is None:
                break
            n += 1
            for mtype, flags, seq, _pid, body in iter_messages(buf):
                out.append((mtype, flags, seq, bytes(body)))
        return out

    def _wait(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("netlink: no answer from the kernel in %.1fs" % self.timeout)
        select.select([self.sock], [], [], left)

    def _other(self, mtype: int, flags: int, seq: int, body: bytes) -> None:
        if self.on_other is not None:
            self.on_other(mtype, flags, seq, bytes(body))

    def transact(self, msgs: Sequence[bytes], seqs: Iterable[int], watch: Iterable[int] = (),
                 replies: Optional[Dict[int, List[Message]]] = None) -> Dict[int, Optional[NetlinkError]]:
        """Send `msgs` and wait for an ack or error for each of `seqs`: seq -> None (ok) or the error.

        Errors for a `watch` seq (a request that is acked only when it fails,
        like an nfnetlink batch header) are returned too; once one arrives
        nothing more is waited for, only what is already queued is read: the
        kernel may have sent it instead of the per-message acks.  Non-error
        messages carrying an awaited seq (answers to GET requests) go to
        `replies` when given.  An overrun while waiting raises Overrun: the
        lost acks cannot be known.
        """
        waiting = set(seqs)
        watched = set(watch)
        result: Dict[int, Optional[NetlinkError]] = {}
        self.send_all(msgs)
        deadline = time.monotonic() + self.timeout
        while waiting:
            buf = self.recv()
            if buf is None:
                if watched.intersection(result):
                    break
                self._wait(deadline)
                continue
            for mtype, flags, seq, _pid, body in iter_messages(buf):
                if mtype == NLMSG_ERROR:
                    ev = parse_error(body, seq, flags)
                    if ev.seq in waiting or (ev.seq in watched and isinstance(ev, NetlinkError)):
                        waiting.discard(ev.seq)
                        result[ev.seq] = None if isinstance(ev, Ack) else ev
                    else:
                        self._other(mtype, flags, seq, body)
                elif seq in waiting and replies is not None:
                    replies.setdefault(seq, []).append((mtype, flags, seq, bytes(body)))
                else:
                    self._other(mtype, flags, seq, body)
        return result

    def errors(self, data: bytes, replies: Optional[List[Message]] = None) -> Dict[int, NetlinkError]:
        """Send one datagram of messages, none of which asks for an ack, and return the errors
        the kernel answered with (seq -> error; empty: all done); other answers go to
        `replies` when given.  Only
        for requests the kernel handles in full before sendmsg returns (an nfnetlink batch,
        whose errors are delivered at its end in the sender's context; a ctnetlink get), so
        what is queued then is all there will be: nothing is waited for.  An overrun raises
        Overrun: answers may have been lost."""
        self.send(data)
        result: Dict[int, NetlinkError] = {}
        while True:
            buf = self.recv()
            if buf is None:
                return result
            for mtype, flags, seq, _pid, body in iter_messages(buf):
                if mtype == NLMSG_ERROR:
                    ev = parse_error(body, seq, flags)
                    if isinstance(ev, NetlinkError):
                        result[ev.seq] = ev
                        continue
                elif replies is not None:
                    replies.append((mtype, flags, seq, bytes(body)))
                    continue
                self._other(mtype, flags, seq, body)

    def request(self, msg: bytes, what: str = "netlink request") -> List[Message]:
        """One request with NLM_F_ACK set by the caller; its answers (if any), or its error raised."""
        seq = NLMSG_HDR.unpack_from(msg)[3]
        replies: Dict[int, List[Message]] = {}
        err = self.transact([msg], [seq], replies=replies)[seq]
        if err is not None:
            raise err.named(what)
        return replies.get(seq, [])

    def dump(self, build: Callable[[int], bytes], what: str = "netlink dump", retries: int = 3) -> List[Message]:
        """Run a dump to NLMSG_DONE; `build(seq)` packs the request (NLM_F_DUMP set).

        A dump the kernel marks NLM_F_DUMP_INTR (the data changed under it) is
        run again, up to `retries` times, then returned as it is.
        """
        for attempt in range(retries + 1):
            seq = self.seq()
            out: List[Message] = []
            interrupted = False
            self.send(build(seq))
            deadline = time.monotonic() + self.timeout
            done = False
            while not done:
                buf = self.recv()
                if buf is None:
                    self._wait(deadline)
                    continue
                deadline = time.monotonic() + self.timeout      # a long dump is progress, not a stall
                for mtype, flags, mseq, _pid, body in iter_messages(buf):
                    if mseq != seq:
                        self._other(mtype, flags, mseq, body)
                        continue
                    if flags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if mtype == NLMSG_DONE:
                        done = True
                    elif mtype == NLMSG_ERROR:
                        ev = parse_error(body, mseq, flags)
                        if isinstance(ev, NetlinkError):
                            raise ev.named(what)
                        done = True                                 # an ack ends a dump too (NLM_F_ACK)
                    else:
                        out.append((mtype, flags, mseq, bytes(body)))
            if not interrupted or attempt == retries:
                return out
        return out                                                  # not reached


class Subscription:
    """A socket of its own joined to multicast groups: select() on fileno(), then messages()."""

    def __init__(self, protocol: int, groups: Sequence[int], rcvbuf: int = 4 << 20):
        self.nl = NetlinkSocket(protocol, groups=groups, rcvbuf=rcvbuf)
        self._overruns = 0

    def fileno(self) -> int:
        return self.nl.fileno()

    def close(self) -> None:
        self.nl.close()

    def messages(self) -> Tuple[List[Message], bool]:
        """What arrived since the last call, and whether the kernel dropped some of it meanwhile
        (ENOBUFS: the listener must read the state again instead of trusting the events)."""
        msgs = self.nl.receive()
        lost = self.nl.overruns != self._overruns
        self._overruns = self.nl.overruns
        return msgs, lost


def _setbuf(sock: socket.socket, force: int, plain: int, size: int) -> None:
    """The forced size needs CAP_NET_ADMIN; without it the plain one, capped by the sysctl maximum."""
    for opt in (force, plain):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue
