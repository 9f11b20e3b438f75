"""nf_tables set and map elements written from the daemon itself, over one persistent socket.

`nft -f -` per change costs a fork/exec, libnftables' start-up and cache
fetch, and 10-14 ms more whenever it deletes an element (the kernel waits
for RCU-deferred destruction when the nft process closes its socket).  A
persistent NETLINK_NETFILTER socket pays none of that: each commit is one
nfnetlink batch (NFNL_MSG_BATCH_BEGIN, NFT_MSG_NEWSETELEM/DELSETELEM with
one element each, NFNL_MSG_BATCH_END) in one sendmsg.

Per-element errors: every element message has its own sequence number, and
the kernel answers a failed one with an error naming it (errno and the
kernel's extended-ack text).  No message asks for an ack: the kernel handles
the whole batch inside our sendmsg and delivers its errors at the end of it,
so what is queued when sendmsg returns is all there is, read without
waiting (as nft does); a batch that went through costs no answer to read
(four fewer datagrams for a new binding).  A batch is atomic: when any
message fails the kernel applies none, so commit() sends it once more
without the failed ones and reports those; a bad element affects only
itself, and there is never a retry loop.

Refresh: Linux 6.12 and newer update an existing element's timeout and
expiration in place when a NEWSETELEM without NLM_F_EXCL carries
NFTA_SET_ELEM_TIMEOUT and NFTA_SET_ELEM_EXPIRATION (mainline 4201f3938914,
"netfilter: nf_tables: set element timeout update support", merged for
v6.12).  Older kernels (OpenWrt 24.10's 6.6, Debian 12's 6.1) accept the
message and keep the old expiration, so there a refresh is a delete and an
add in the same batch.  Which one runs is probed at start on a throwaway
table.  Both ways a refresh of an element that has vanished creates it.

Keys and data are given as Python values and encoded as nft lays them out
in registers: an `ipv4_addr` is a str ("10.0.0.2", 4 bytes), an
`inet_service` an int (2 bytes, big-endian), a concatenation a tuple whose
every field takes a 4-byte-aligned slot (`ipv4_addr . inet_service` is
addr + port + 2 zero bytes, `inet_service . ipv4_addr` port + 2 zero bytes
+ addr); bytes pass as they are.  Timeouts are seconds (the kernel takes
milliseconds, be64).

Layouts and numbers: linux/netfilter/nf_tables.h and nfnetlink.h; the
datatype ids in NFTA_SET_KEY_TYPE are nftables' own (TYPE_IPADDR 7,
TYPE_INET_SERVICE 13, concatenations in 6-bit fields).
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from alg.kernel import netlink as nl
from alg.kernel.netlink_filter import attach_hiding
from alg.kernel.netlink import (NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFNLGRP_NFTABLES, NLM_F_ACK,
                                NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NetlinkSocket, attr,
                                attr_be32, attr_str, get_be32, get_be64, get_str, parse_attrs)

# enum nf_tables_msg_types
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_DELCHAIN = 5
NFT_MSG_NEWRULE = 6
NFT_MSG_DELRULE = 8
NFT_MSG_NEWSET = 9
NFT_MSG_GETSET = 10
NFT_MSG_DELSET = 11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NFT_MSG_NEWGEN = 15

# enum nft_table_attributes
NFTA_TABLE_NAME = 1
NFTA_TABLE_FLAGS = 2
# enum nft_table_flags
NFT_TABLE_F_OWNER = 0x2                   # the kernel removes the table when its owner's socket closes
# enum nft_chain_attributes / nft_rule_attributes (what notifications name)
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
# enum nft_set_attributes
NFTA_SET_TABLE = 1
NFTA_SET_NAME = 2
NFTA_SET_FLAGS = 3
NFTA_SET_KEY_TYPE = 4
NFTA_SET_KEY_LEN = 5
NFTA_SET_DATA_TYPE = 6
NFTA_SET_DATA_LEN = 7
NFTA_SET_ID = 10
# enum nft_set_elem_list_attributes
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
# enum nft_list_attributes
NFTA_LIST_ELEM = 1
# enum nft_set_elem_attributes
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_FLAGS = 3
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_EXPIRATION = 5
NFTA_SET_ELEM_USERDATA = 6
# libnftnl's element userdata: TLVs of (type u8, length u8, value); a comment is type 0,
# NUL-terminated, at most 128 bytes (what `nft ... comment "..."` writes and lists)
NFTNL_UDATA_SET_ELEM_COMMENT = 0
COMMENT_MAX = 127
# enum nft_data_attributes
NFTA_DATA_VALUE = 1
# enum nft_gen_attributes
NFTA_GEN_ID = 1
NFTA_GEN_PROC_PID = 2
NFTA_GEN_PROC_NAME = 3

# enum nft_set_flags
NFT_SET_MAP = 0x8
NFT_SET_TIMEOUT = 0x10
NFT_SET_CONCAT = 0x80

# linux/netfilter.h
NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
FAMILIES = {"inet": NFPROTO_INET, "ip": NFPROTO_IPV4, "ip6": NFPROTO_IPV6}

# nftables' datatype ids (src/datatype.h: enum datatypes), as it stores them in NFTA_SET_KEY_TYPE
TYPE_IPADDR = 7
TYPE_INET_SERVICE = 13
TYPE_BITS = 6
NFT_DATA_VERDICT = 0xFFFFFF00

MAX_BATCH = 1000              # element messages per kernel batch: acks stay far below the receive buffer

Key = Union[str, int, bytes, Tuple[Union[str, int, bytes], ...]]


def family_number(family: Union[str, int]) -> int:
    if isinstance(family, int):
        return family
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError("unknown nftables family %r: use %s" % (family, ", ".join(FAMILIES))) from None


# -- values


_PORT = struct.Struct("!H").pack
_aton = socket.inet_aton


def _field(v: Union[str, int, bytes]) -> bytes:
    t = type(v)                             # exact types first: this runs for every new element
    if t is int:
        if 0 <= v <= 0xFFFF:
            return _PORT(v)
        raise ValueError("port %d out of range 0-65535" % v)
    if t is str:
        if v.count(".") == 3:
            try:
                return _aton(v)
            except OSError:
                pass
        return _bad_addr(v)
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        raise ValueError("not an nftables value: %r" % (v,))
    if isinstance(v, (int, str)):           # a subclass (an IntEnum...): as its plain value
        return _field(int(v) if isinstance(v, int) else str(v))
    raise ValueError("not an nftables value: %r" % (v,))


def _bad_addr(v: str) -> bytes:
    raise ValueError("not an IPv4 address: %r" % v)


def encode_value(value: Key) -> bytes:
    """A key or map datum as the kernel stores it: a tuple is a concatenation, one 4-byte-aligned
    register slot per field (NFT_REG32_SIZE); a single value keeps its own length."""
    if isinstance(value, tuple):
        out = []
        for v in value:
            f = _field(v)
            out.append(f)
            n = len(f) & 3
            if n:
                out.append(_PAD[n])
        return b"".join(out)
    return _field(value)


def _type_fields(type_id: int) -> List[int]:
    """nftables' concatenated datatype id split into its fields, first field first."""
    fields = []
    while type_id:
        fields.append(type_id & ((1 << TYPE_BITS) - 1))
        type_id >>= TYPE_BITS
    return fields[::-1]


def decode_value(type_id: Optional[int], data: bytes) -> Any:
    """The inverse of encode_value() for the types our table uses; anything else stays bytes."""
    data = bytes(data)
    if type_id is None:
        return data
    fields = _type_fields(type_id) if type_id < NFT_DATA_VERDICT else []
    sizes = {TYPE_IPADDR: 4, TYPE_INET_SERVICE: 2}
    if not fields or any(f not in sizes for f in fields):
        return data
    out: List[Any] = []
    off = 0
    for f in fields:
        n = sizes[f]
        if off + n > len(data):
            return data
        chunk = data[off:off + n]
        out.append(socket.inet_ntoa(chunk) if f == TYPE_IPADDR else struct.unpack("!H", chunk)[0])
        off += n + (-n % 4) if len(fields) > 1 else n
    return tuple(out) if len(fields) > 1 else out[0]


def type_id(*fields: int) -> int:
    """nftables' id for a concatenation of datatypes (a single type is its own id)."""
    t = 0
    for f in fields:
        t = (t << TYPE_BITS) | f
    return t


def ms(seconds: float) -> int:
    """Seconds to the kernel's milliseconds, rounded up, at least 1 (0 would mean 'no timeout')."""
    return max(1, int(math.ceil(seconds * 1000)))


# -- messages


def nft_message(op: int, family: int, attrs: bytes, flags: int, seq: int) -> bytes:
    """An nf_tables request (NLM_F_REQUEST is always set: the batch refuses anything else)."""
    return nl.nfnl_message(NFNL_SUBSYS_NFTABLES, op, family, attrs, NLM_F_REQUEST | flags, seq)


_BATCH_RES = nl.nfgenmsg(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)


def batch_begin(seq: int) -> bytes:
    """NFNL_MSG_BATCH_BEGIN: res_id names the subsystem the batch is for."""
    return nl.NLMSG_HDR.pack(20, nl.NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0) + _BATCH_RES


def batch_end(seq: int) -> bytes:
    return nl.NLMSG_HDR.pack(20, nl.NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0) + _BATCH_RES


def comment_udata(comment: str) -> bytes:
    """An element comment as libnftnl's userdata TLV (so `nft list` shows it too)."""
    raw = comment.encode("ascii", "replace")[:COMMENT_MAX] + b"\0"
    return struct.pack("BB", NFTNL_UDATA_SET_ELEM_COMMENT, len(raw)) + raw


def udata_comment(udata: bytes) -> Optional[str]:
    i = 0
    while i + 2 <= len(udata):
        t, n = udata[i], udata[i + 1]
        if t == NFTNL_UDATA_SET_ELEM_COMMENT:
            return udata[i + 2:i + 2 + n].rstrip(b"\0").decode("ascii", "replace")
        i += 2 + n
    return None


# Element messages are built on the packet path (a new binding's elements go out before its
# datagram's verdict), so they are packed directly, not attribute by attribute; the bytes are
# the same (tests/test_nf_tables.py checks them against the attribute builders).
_NLA = nl.NLA_HDR.pack
_BE64 = nl.BE64.pack
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")           # by len % 4
_NESTED = nl.NLA_F_NESTED
_KEY_HDR = NFTA_SET_ELEM_KEY | _NESTED
_DATA_HDR = NFTA_SET_ELEM_DATA | _NESTED
_ELEM_HDR = NFTA_LIST_ELEM | _NESTED
_ELEMENTS_HDR = NFTA_SET_ELEM_LIST_ELEMENTS | _NESTED
_TIMEOUT_HDR = _NLA(12, NFTA_SET_ELEM_TIMEOUT)
_EXPIRATION_HDR = _NLA(12, NFTA_SET_ELEM_EXPIRATION)


def _nested_value(hdr: int, v: bytes) -> bytes:
    """NFTA_SET_ELEM_KEY or _DATA (hdr) { NFTA_DATA_VALUE { v } }."""
    n = len(v)
    pad = _PAD[n & 3]
    return _NLA(8 + n + len(pad), hdr) + _NLA(4 + n, NFTA_DATA_VALUE) + v + pad


def _element_body(key_attr: bytes, data_attr: bytes, timeout_ms: Optional[int], expiration_ms: Optional[int],
                  comment: Optional[str]) -> bytes:
    """What an NFTA_LIST_ELEM holds, after its key's and data's attributes."""
    body = key_attr + data_attr
    if timeout_ms is not None:
        body += _TIMEOUT_HDR + _BE64(timeout_ms)
    if expiration_ms is not None:
        body += _EXPIRATION_HDR + _BE64(expiration_ms)
    if comment is not None:
        body += attr(NFTA_SET_ELEM_USERDATA, comment_udata(comment))
    return body


def element(key: bytes, data: Optional[bytes] = None, timeout_ms: Optional[int] = None,
            expiration_ms: Optional[int] = None, comment: Optional[str] = None) -> bytes:
    """One NFTA_LIST_ELEM: key and data as nested NFTA_DATA_VALUE, timeout/expiration be64 ms,
    a comment as userdata."""
    body = _element_body(_nested_value(_KEY_HDR, key), b"" if data is None else _nested_value(_DATA_HDR, data),
                         timeout_ms, expiration_ms, comment)
    if len(body) > 0xFFFF - 4:
        raise ValueError("nftables element too long: %d bytes" % len(body))
    return _NLA(4 + len(body), _ELEM_HDR) + body


_HEADS: Dict[Tuple[int, str, str], bytes] = {}    # (family, table, set) -> nfgenmsg and the names


def _head(family: int, table: str, set_name: str) -> bytes:
    head = _HEADS.get((family, table, set_name))
    if head is None:
        head = _HEADS[(family, table, set_name)] = (nl.nfgenmsg(family) + attr_str(NFTA_SET_ELEM_LIST_TABLE, table)
                                                     + attr_str(NFTA_SET_ELEM_LIST_SET, set_name))
    return head


# A binding's addresses and ports recur in its elements and in the writes that soon follow
# (the refresh when the answer comes, the close), so each value's nested attribute is built
# once: NFTA_SET_ELEM_KEY or _DATA { NFTA_DATA_VALUE { the value as encode_value() gives
# it } }.  The last few hundred are enough for that (RSS with 10k registrations stays as it
# was).  Only exact ints, strs and tuples of them are remembered (1.0 == 1 and True == 1
# must still be refused).
_KEY_ATTRS: Dict[Any, bytes] = {}
_DATA_ATTRS: Dict[Any, bytes] = {}
_ATTRS_MAX = 256


def _remembered(value: Any) -> bool:
    t = type(value)
    if t is tuple:
        for f in value:
            if type(f) is not int and type(f) is not str:
                return False
        return True
    return t is int or t is str


def _value_attr(cache: Dict[Any, bytes], hdr: int, value: Any) -> bytes:
    """The nested attribute for value (ValueError: not an nftables value)."""
    keep = _remembered(value)
    a = cache.get(value) if keep else None
    if a is None:
        a = _nested_value(hdr, encode_value(value))
        if keep:
            if len(cache) >= _ATTRS_MAX:
                cache.clear()
            cache[value] = a
    return a


_NLMSG = nl.NLMSG_HDR.pack
_NEWSETELEM = nl.nfnl_type(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM)
_DELSETELEM = nl.nfnl_type(NFNL_SUBSYS_NFTABLES, NFT_MSG_DELSETELEM)


def _element_message(mtype: int, flags: int, seq: int, head: bytes, key_attr: bytes, data_attr: bytes,
                     timeout_ms: Optional[int], expiration_ms: Optional[int], comment: Optional[str]) -> bytes:
    """setelem_message(mtype, ..., [element(...)], seq, flags) from attributes already built: the
    same bytes in one step (tests/test_nf_tables.py compares them)."""
    body = _element_body(key_attr, data_attr, timeout_ms, expiration_ms, comment)
    n = len(body)
    if n > 0xFFFF - 8:
        raise ValueError("nftables element too long: %d bytes" % n)
    return (_NLMSG(24 + len(head) + n, mtype, NLM_F_REQUEST | flags, seq, 0) + head
            + _NLA(8 + n, _ELEMENTS_HDR) + _NLA(4 + n, _ELEM_HDR) + body)


def setelem_message(op: int, family: int, table: str, set_name: str, elements: Sequence[bytes], seq: int,
                    flags: int = 0) -> bytes:
    """NFT_MSG_NEWSETELEM / DELSETELEM / GETSETELEM for `elements` of one set."""
    head = _head(family, table, set_name)
    if elements:
        body = b"".join(elements)
        if len(body) > 0xFFFF - 4:
            raise ValueError("netlink attribute %d too long: %d bytes" % (NFTA_SET_ELEM_LIST_ELEMENTS, len(body)))
        body = _NLA(4 + len(body), _ELEMENTS_HDR) + body
    else:
        body = b""
    return nl.NLMSG_HDR.pack(16 + len(head) + len(body), nl.nfnl_type(NFNL_SUBSYS_NFTABLES, op),
                             NLM_F_REQUEST | flags, seq, 0) + head + body


def parse_elements(body: bytes) -> Tuple[str, str, List[Dict[int, bytes]]]:
    """A NEWSETELEM message (dump answer or notification): table, set, and each element's attributes
    with key and data unwrapped to their NFTA_DATA_VALUE bytes."""
    top = parse_attrs(body, nl.NFGEN.size)
    elems = []
    for t, v in nl.iter_attrs(top.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
        if t != NFTA_LIST_ELEM:
            continue
        e = parse_attrs(v)
        for k in (NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA):
            if k in e:
                e[k] = parse_attrs(e[k]).get(NFTA_DATA_VALUE, b"")
        elems.append(e)
    return get_str(top.get(NFTA_SET_ELEM_LIST_TABLE, b"")), get_str(top.get(NFTA_SET_ELEM_LIST_SET, b"")), elems


class Element:
    """A set or map element as the kernel holds it; timeout and expires in seconds (None: none)."""

    __slots__ = ("key", "data", "timeout", "expires", "comment")

    def __init__(self, key: Any, data: Any = None, timeout: Optional[float] = None,
                 expires: Optional[float] = None, comment: Optional[str] = None):
        self.key = key
        self.data = data
        self.timeout = timeout
        self.expires = expires
        self.comment = comment

    def __repr__(self) -> str:
        return "Element(%r, data=%r, timeout=%r, expires=%r)" % (self.key, self.data, self.timeout, self.expires)


class ElementFailure:
    """One operation the kernel did not carry out: which, on what, and why (errno and text)."""

    __slots__ = ("op", "set", "key", "data", "errno", "reason")

    def __init__(self, op: str, set_name: str, key: Any, data: Any, code: int, reason: str = ""):
        self.op = op
        self.set = set_name
        self.key = key
        self.data = data
        self.errno = code
        self.reason = reason or os.strerror(code)

    def __str__(self) -> str:
        what = "%s %s %r" % (self.op, self.set, self.key)
        if self.data is not None:
            what += " : %r" % (self.data,)
        return "%s: %s (%s)" % (what, errno.errorcode.get(self.errno, "errno %d" % self.errno), self.reason)

    __repr__ = __str__


class _Op:
    __slots__ = ("kind", "set", "key", "data", "msgs")

    def __init__(self, kind: str, set_name: str, key: Any, data: Any):
        self.kind = kind
        self.set = set_name
        self.key = key
        self.data = data
        self.msgs: List[Tuple[int, bool, bytes]] = []     # (seq, ENOENT is fine, message) for this op


class Batch:
    """Element operations collected for one commit; nothing reaches the kernel before commit()."""

    def __init__(self, nft: "NfTables"):
        self._nft = nft
        self._ops: List[_Op] = []
        self._bad: List[ElementFailure] = []

    def __len__(self) -> int:
        return len(self._ops) + len(self._bad)

    def _op(self, kind: str, set_name: str, key: Key, data: Optional[Key]) -> Optional[Tuple[_Op, bytes, bytes]]:
        """The op recorded, with its key's and data's attributes (b"" without data); None (and
        the failure kept for commit()) for a value nftables can't hold."""
        try:
            k = _value_attr(_KEY_ATTRS, _KEY_HDR, key)
            d = b"" if data is None else _value_attr(_DATA_ATTRS, _DATA_HDR, data)
        except ValueError as e:
            self._bad.append(ElementFailure(kind, set_name, key, data, errno.EINVAL, str(e)))
            return None
        op = _Op(kind, set_name, key, data)
        self._ops.append(op)
        return op, k, d

    def _msg(self, op: _Op, mtype: int, k: bytes, d: bytes = b"", timeout_ms: Optional[int] = None,
             expiration_ms: Optional[int] = None, comment: Optional[str] = None, ok_missing: bool = False) -> None:
        n = self._nft
        seq = n.nl.seq()
        flags = NLM_F_CREATE if mtype == _NEWSETELEM else 0          # no NLM_F_ACK: errors only
        op.msgs.append((seq, ok_missing, _element_message(mtype, flags, seq, _head(n.family, n.table, op.set), k, d,
                                                          timeout_ms, expiration_ms, comment)))

    def add(self, set_name: str, key: Key, data: Optional[Key] = None, timeout: Optional[float] = None,
            comment: Optional[str] = None) -> "Batch":
        """Add an element (a map's needs data).  An identical element already there is no error; on
        kernels before 6.12 it keeps its old expiration (use refresh() to extend it)."""
        r = self._op("add", set_name, key, data)
        if r:
            self._msg(r[0], _NEWSETELEM, r[1], r[2], None if timeout is None else ms(timeout), None, comment)
        return self

    def delete(self, set_name: str, key: Key) -> "Batch":
        """Delete an element; a missing one is reported (ENOENT) and affects nothing else."""
        r = self._op("delete", set_name, key, None)
        if r:
            self._msg(r[0], _DELSETELEM, r[1])
        return self

    def refresh(self, set_name: str, key: Key, data: Optional[Key] = None, timeout: float = 0.0,
                comment: Optional[str] = None) -> "Batch":
        """Give an element a fresh timeout (expiring `timeout` seconds from now), creating it if gone.

        One in-place update where the kernel has it (6.12+), else delete and
        add in this batch.  `data` must be the element's own (a map needs
        it to recreate the element; different data is EEXIST on 6.12+).
        """
        r = self._op("refresh", set_name, key, data)
        if r:
            op, k, d = r
            t = ms(timeout)
            if self._nft.timeout_update:
                self._msg(op, _NEWSETELEM, k, d, t, t, comment)
            else:
                self._msg(op, _DELSETELEM, k, ok_missing=True)
                self._msg(op, _NEWSETELEM, k, d, t, None, comment)
        return self

    def commit(self) -> List[ElementFailure]:
        """Carry out the operations; returns those that failed (empty: all done)."""
        failures = self._bad
        ops, self._ops, self._bad = self._ops, [], []
        for i in range(0, len(ops), MAX_BATCH):
            failures += self._nft._commit(ops[i:i + MAX_BATCH])
        return failures


class NfTables:
    """Element writer and reader for one table (family "ip", "ip6" or "inet").

    `timeout_update`: None probes the kernel (see the module docstring),
    True/False forces the one-message refresh or the delete+add fallback.
    """

    def __init__(self, family: Union[str, int] = "ip", table: str = "sipalg", timeout_update: Optional[bool] = None,
                 timeout: float = 2.0):
        self.family = family_number(family)
        self.table = table
        self.commits = 0
        self.nl = NetlinkSocket(NETLINK_NETFILTER, rcvbuf=4 << 20, sndbuf=4 << 20, timeout=timeout)
        try:
            self.timeout_update = self.probe_timeout_update() if timeout_update is None else timeout_update
        except BaseException:
            self.nl.close()
            raise

    def close(self) -> None:
        self.nl.close()

    def fileno(self) -> int:
        return self.nl.fileno()

    def batch(self) -> Batch:
        return Batch(self)

    # -- commits

    def _send(self, msgs: List[Tuple[int, bool, bytes]]) -> Tuple[Dict[int, NetlinkError], Optional[NetlinkError]]:
        """One kernel batch: the messages that failed (seq -> error), and the error the kernel gave
        the batch as a whole."""
        begin, end = self.nl.seq(), self.nl.seq()
        data = [batch_begin(begin)]
        for m in msgs:
            data.append(m[2])
        data.append(batch_end(end))
        data = b"".join(data)
        if len(data) > self.nl.max_send:
            raise ValueError("nf_tables batch of %d messages exceeds the socket's send buffer" % len(msgs))
        self.commits += 1
        res = self.nl.errors(data)
        return res, res.pop(begin, None)

    def _commit(self, ops: List[_Op]) -> List[ElementFailure]:
        failures: List[ElementFailure] = []
        for attempt in (0, 1):
            msgs = [m for op in ops for m in op.msgs]
            if not msgs:
                break
            bad, whole = self._send(msgs)                  # only failures answer
            if not bad and whole is None:
                break
            if not bad:                                   # refused at commit: no element to blame
                if attempt == 0:
                    continue
                failures += [ElementFailure(op.kind, op.set, op.key, op.data, whole.errno, str(whole))
                             for op in ops]
                break
            keep: List[_Op] = []
            for op in ops:
                errs = [(e, ok) for s, ok, _m in op.msgs for e in (bad.get(s),) if e is not None]
                fatal = [e for e, ok in errs if not (ok and e.errno == errno.ENOENT)]
                if fatal:
                    e = fatal[0]
                    failures.append(ElementFailure(op.kind, op.set, op.key, op.data, e.errno,
                                                   e.kernel_msg or os.strerror(e.errno)))
                    continue
                op.msgs = [m for m in op.msgs if m[0] not in bad]     # a missing element's delete: dropped
                keep.append(op)
            if attempt == 1:                              # the second try failed too: none of it applied
                failures += [ElementFailure(op.kind, op.set, op.key, op.data, errno.ECANCELED,
                                            "not applied: the batch was refused again")
                             for op in keep]
                break
            ops = self._renumber(keep)
        return failures

    def _renumber(self, ops: List[_Op]) -> List[_Op]:
        """Fresh sequence numbers for a re-sent batch, so late acks of the first can't be mistaken."""
        for op in ops:
            new = []
            for _s, ok, m in op.msgs:
                seq = self.nl.seq()
                new.append((seq, ok, m[:8] + struct.pack("=I", seq) + m[12:]))
            op.msgs = new
        return ops

    # -- reading

    def table_exists(self) -> bool:
        """NFT_MSG_GETTABLE: does our table exist now?"""
        seq = self.nl.seq()
        msg = nft_message(NFT_MSG_GETTABLE, self.family, attr_str(NFTA_TABLE_NAME, self.table),
                          NLM_F_ACK, seq)
        try:
            self.nl.request(msg, "nf_tables GETTABLE %s" % self.table)
        except NetlinkError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def set_types(self, set_name: str, table: Optional[str] = None) -> Tuple[int, Optional[int], int]:
        """NFT_MSG_GETSET: (key type id, data type id or None for a plain set, flags)."""
        table = table or self.table
        seq = self.nl.seq()
        msg = nft_message(NFT_MSG_GETSET, self.family,
                          attr_str(NFTA_SET_TABLE, table) + attr_str(NFTA_SET_NAME, set_name),
                          NLM_F_ACK, seq)
        for mtype, _f, _s, body in self.nl.request(msg, "nf_tables GETSET %s %s" % (table, set_name)):
            if mtype == nl.nfnl_type(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSET):
                a = parse_attrs(body, nl.NFGEN.size)
                flags = get_be32(a[NFTA_SET_FLAGS]) if NFTA_SET_FLAGS in a else 0
                data = get_be32(a[NFTA_SET_DATA_TYPE]) if NFTA_SET_DATA_TYPE in a and flags & NFT_SET_MAP else None
                return get_be32(a.get(NFTA_SET_KEY_TYPE, b"\0\0\0\0")), data, flags
        raise NetlinkError(errno.ENOENT, seq, "nf_tables GETSET %s %s: no answer" % (table, set_name))

    def elements(self, set_name: str, table: Optional[str] = None) -> List[Element]:
        """Every element of a set with its timeout and the seconds left (NFT_MSG_GETSETELEM dump)."""
        table = table or self.table
        key_type, data_type, _flags = self.set_types(set_name, table)
        msgs = self.nl.dump(lambda seq: setelem_message(NFT_MSG_GETSETELEM, self.family, table, set_name, [],
                                                        seq, NLM_F_DUMP),
                            "nf_tables GETSETELEM %s %s" % (table, set_name))
        out = []
        for mtype, _f, _s, body in msgs:
            if mtype != nl.nfnl_type(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM):
                continue
            for e in parse_elements(body)[2]:
                out.append(Element(decode_value(key_type, e.get(NFTA_SET_ELEM_KEY, b"")),
                                   decode_value(data_type, e[NFTA_SET_ELEM_DATA]) if NFTA_SET_ELEM_DATA in e
                                   else None,
                                   get_be64(e[NFTA_SET_ELEM_TIMEOUT]) / 1000.0 if NFTA_SET_ELEM_TIMEOUT in e
                                   else None,
                                   get_be64(e[NFTA_SET_ELEM_EXPIRATION]) / 1000.0 if NFTA_SET_ELEM_EXPIRATION in e
                                   else None,
                                   udata_comment(e[NFTA_SET_ELEM_USERDATA]) if NFTA_SET_ELEM_USERDATA in e
                                   else None))
        return out

    # -- the probe

    def probe_timeout_update(self) -> bool:
        """Does this kernel update an existing element's timeout in place (6.12+)?  Tried on a
        throwaway table (owned by this socket, so the kernel drops it should we die half-way):
        add an element with 60 s, "add" it again with 120 s, read it back."""
        table = "sipalg_probe_%d" % os.getpid()
        fam = self.family
        s = self.nl

        def batch(*msgs: bytes) -> None:
            seqs = [nl.NLMSG_HDR.unpack_from(m)[3] for m in msgs]
            begin = s.seq()
            res = s.transact([batch_begin(begin) + b"".join(msgs) + batch_end(s.seq())], seqs, watch=[begin])
            for e in res.values():
                if e is not None:
                    raise e.named("nf_tables probe (table ip %s)" % table)

        def elem(timeout: int, expiration: Optional[int] = None) -> bytes:
            seq = s.seq()
            return setelem_message(NFT_MSG_NEWSETELEM, fam, table, "s", [element(b"\0\x09", None, timeout, expiration)],
                                   seq, NLM_F_CREATE | NLM_F_ACK)

        seq = s.seq()
        new_table = nft_message(NFT_MSG_NEWTABLE, fam, attr_str(NFTA_TABLE_NAME, table)
                                + attr_be32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER),      # gone with us if we die
                                NLM_F_CREATE | NLM_F_ACK, seq)
        seq2 = s.seq()
        new_set = nft_message(NFT_MSG_NEWSET, fam, attr_str(NFTA_SET_TABLE, table) + attr_str(NFTA_SET_NAME, "s")
                              + attr_be32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT) + attr_be32(NFTA_SET_KEY_TYPE, TYPE_INET_SERVICE)
                              + attr_be32(NFTA_SET_KEY_LEN, 2) + attr_be32(NFTA_SET_ID, 1),
                              NLM_F_CREATE | NLM_F_ACK, seq2)
        try:
            batch(new_table, new_set, elem(60000))
            batch(elem(120000, 120000))
            (e,) = self.elements("s", table)
            return e.timeout is not None and e.timeout > 90
        finally:
            seq = s.seq()
            try:
                batch(nft_message(NFT_MSG_DELTABLE, fam, attr_str(NFTA_TABLE_NAME, table), NLM_F_ACK, seq))
            except NetlinkError:
                pass


# -- notifications


class TableEvent:
    """One nf_tables notification: what happened (NFT_MSG_* name, lower case), to which table and object."""

    __slots__ = ("kind", "family", "table", "name")

    def __init__(self, kind: str, family: int, table: str, name: str = ""):
        self.kind = kind
        self.family = family
        self.table = table
        self.name = name

    def __repr__(self) -> str:
        return "TableEvent(%s %d %s %s)" % (self.kind, self.family, self.table, self.name)


_KINDS = {NFT_MSG_NEWTABLE: "newtable", NFT_MSG_DELTABLE: "deltable", NFT_MSG_NEWCHAIN: "newchain",
          NFT_MSG_DELCHAIN: "delchain", NFT_MSG_NEWRULE: "newrule", NFT_MSG_DELRULE: "delrule",
          NFT_MSG_NEWSET: "newset", NFT_MSG_DELSET: "delset", NFT_MSG_NEWSETELEM: "newsetelem",
          NFT_MSG_DELSETELEM: "delsetelem", NFT_MSG_NEWGEN: "newgen"}
_REMOVALS = ("deltable", "delchain", "delset", "delrule")


def parse_event(mtype: int, body: bytes) -> Optional[TableEvent]:
    """A NFNLGRP_NFTABLES message as a TableEvent (None for what is not nf_tables')."""
    if mtype >> 8 != NFNL_SUBSYS_NFTABLES or (mtype & 0xFF) not in _KINDS or len(body) < nl.NFGEN.size:
        return None
    op = mtype & 0xFF
    family = nl.NFGEN.unpack_from(body)[0]
    a = parse_attrs(body, nl.NFGEN.size)
    if op == NFT_MSG_NEWGEN:
        return TableEvent("newgen", family, "", get_str(a.get(NFTA_GEN_PROC_NAME, b"")))
    table = get_str(a.get(1, b""))                    # NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,...} = 1
    name = ""
    if op in (NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN):
        name = get_str(a.get(NFTA_CHAIN_NAME, b""))
    elif op in (NFT_MSG_NEWRULE, NFT_MSG_DELRULE):
        name = get_str(a.get(NFTA_RULE_CHAIN, b""))
    elif op in (NFT_MSG_NEWSET, NFT_MSG_DELSET, NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
        name = get_str(a.get(2, b""))                 # NFTA_SET_NAME = NFTA_SET_ELEM_LIST_SET = 2
    return TableEvent(_KINDS[op], family, table, name)


HIDDEN = (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM, NFT_MSG_NEWGEN)     # what no reader of the monitor uses


class NfTablesMonitor(nl.Subscription):
    """NFNLGRP_NFTABLES on its own socket: select() on fileno(), then read().

    Every commit anyone makes is announced, our own element writes too; a
    socket filter keeps element and generation notifications (which nothing
    here reads) in the kernel, so the daemon's own writes don't wake it
    (`hiding`: whether the filter is attached).  `removed(events)` says whether
    any of them took something out of our table; an overrun (the kernel
    dropped notifications for us) counts as possibly removed: check with
    NfTables.table_exists().
    """

    def __init__(self, family: Union[str, int] = "ip", table: str = "sipalg"):
        super().__init__(NETLINK_NETFILTER, [NFNLGRP_NFTABLES])
        self.family = family_number(family)
        self.table = table
        self.hiding = attach_hiding(self.nl.sock, [nl.nfnl_type(NFNL_SUBSYS_NFTABLES, t) for t in HIDDEN])

    def read(self) -> List[TableEvent]:
        """The notifications waiting now; an overrun since the last read adds TableEvent("overrun")."""
        msgs, lost = self.messages()
        out = []
        for mtype, _flags, _seq, body in msgs:
            try:
                ev = parse_event(mtype, body)
            except ValueError:
                ev = TableEvent("overrun", self.family, self.table)     # undecodable: as good as lost
            if ev is not None:
                out.append(ev)
        if lost:
            out.append(TableEvent("overrun", self.family, self.table))
        return out

    def removed(self, events: Sequence[TableEvent]) -> bool:
        """Did any of these take our table, or a chain, set or rule of it, away (or might have)?"""
        return any(e.kind == "overrun" or (e.kind in _REMOVALS and e.table == self.table and e.family == self.family)
                   for e in events)
