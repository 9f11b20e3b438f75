"""A socket filter (classic BPF) that keeps chosen netlink message types off a subscription.

Every nf_tables commit is announced to NFNLGRP_NFTABLES, the daemon's own
element writes too: a new binding's three or four elements come back as
notifications plus a NEWGEN, waking the daemon after its verdict only to
be read and dropped, while the next datagram (often the answer to the one
just passed) waits in the queue.  The kernel runs this filter on each
notification datagram before it reaches the socket and drops it when
every message in it is of a type the reader never uses.

nf_tables coalesces one commit's notifications into shared datagrams, so
one may hold several messages of different types: the filter walks them
(classic BPF has no backward jumps, so the walk is unrolled for
`MAX_MESSAGES`) and keeps the datagram if any message is of another type,
if there are more messages than it looks at, or if anything in it does not
parse (a header cut short, a length below a header's).  A filter can only
ever hide what it is sure of; everything else arrives as without it.

Netlink headers are host byte order while classic BPF loads are big-endian,
so message types are compared byte-swapped where the host is little-endian
and nlmsg_len is assembled from its bytes.  The program is attached with
SO_ATTACH_FILTER; where that fails (no array module, a kernel without socket
filters) nothing is filtered and the reader drops those messages itself.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Dict, List, Sequence, Tuple

SO_ATTACH_FILTER = 26
MAX_MESSAGES = 16
NLMSG_HDRLEN = 16

# linux/filter.h (classic BPF)
BPF_LD, BPF_LDX, BPF_ST, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_IND, BPF_MEM, BPF_LEN = 0x00, 0x40, 0x60, 0x80
BPF_ADD, BPF_SUB, BPF_OR, BPF_AND, BPF_LSH = 0x00, 0x10, 0x40, 0x50, 0x60
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE = 0x00, 0x10, 0x20, 0x30
BPF_K, BPF_X = 0x00, 0x08

KEEP = 0xFFFFFFFF          # return value: the whole datagram
DROP = 0

# an instruction: (code, jump-if-true label or None, jump-if-false label or None, k)
# labels name positions; None falls through to the next instruction
Insn = Tuple[int, object, object, int]


def _assemble(insns: List[object]) -> List[Tuple[int, int, int, int]]:
    """Labels (str items) resolved to the 8-bit forward offsets classic BPF jumps take."""
    at: Dict[str, int] = {}
    code: List[Insn] = []
    for i in insns:
        if isinstance(i, str):
            at[i] = len(code)
        else:
            code.append(i)      # type: ignore[arg-type]
    out = []
    for n, (op, jt, jf, k) in enumerate(code):
        def off(label: object) -> int:
            if label is None:
                return 0
            d = at[label] - n - 1                     # type: ignore[index]
            if not 0 <= d <= 255:
                raise ValueError("BPF jump out of range: %d" % d)
            return d
        if op == BPF_JMP | BPF_JA:
            out.append((op, 0, 0, at[k] - n - 1))      # type: ignore[index]
        else:
            out.append((op, off(jt), off(jf), k))
    return out


def _wire_type(t: int) -> int:
    """A host-order u16 as a classic BPF half-word load reads it (big-endian)."""
    return struct.unpack("!H", struct.pack("=H", t))[0]


def hide_program(types: Sequence[int], byteorder: str = sys.byteorder) -> List[Tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions: drop a datagram whose every message's
    nlmsg_type is in `types`; keep anything else."""
    if not types:
        raise ValueError("no message types to hide")
    little = byteorder == "little"
    swap = _wire_type if little else (lambda t: t)
    # nlmsg_len is 32 bits at offset 0; datagrams here are far below 64 KiB, so its upper
    # half must be zero (else: keep) and the lower half is two bytes
    zero_half, hi, lo = (2, 1, 0) if little else (0, 2, 3)
    p: List[object] = [(BPF_LD | BPF_IMM, None, None, 0), (BPF_ST, None, None, 0)]    # M[0]: offset
    for m in range(MAX_MESSAGES):
        nxt, keep, drop, more, length = ("next%d" % m, "keep%d" % m, "drop%d" % m, "more%d" % m,
                                         "len%d" % m)
        p += [
            (BPF_LDX | BPF_W | BPF_MEM, None, None, 0),          # X = offset
            (BPF_LD | BPF_W | BPF_LEN, None, None, 0),           # A = datagram length
            (BPF_JMP | BPF_JGT | BPF_X, more, None, 0),
            (BPF_JMP | BPF_JEQ | BPF_X, drop, keep, 0),         # all read and all hidden; or overlong
            more,
            (BPF_ALU | BPF_SUB | BPF_X, None, None, 0),          # A = bytes left
            (BPF_JMP | BPF_JGE | BPF_K, None, keep, NLMSG_HDRLEN),
            (BPF_LD | BPF_H | BPF_IND, None, None, 4),           # nlmsg_type
        ]
        for i, t in enumerate(types):
            p.append((BPF_JMP | BPF_JEQ | BPF_K, length, keep if i == len(types) - 1 else None, swap(t)))
        p += [
            length,
            (BPF_LD | BPF_H | BPF_IND, None, None, zero_half),
            (BPF_JMP | BPF_JEQ | BPF_K, None, keep, 0),
            (BPF_LD | BPF_B | BPF_IND, None, None, hi),
            (BPF_ALU | BPF_LSH | BPF_K, None, None, 8),
            (BPF_ST, None, None, 1),
            (BPF_LD | BPF_B | BPF_IND, None, None, lo),
            (BPF_LDX | BPF_W | BPF_MEM, None, None, 1),
            (BPF_ALU | BPF_OR | BPF_X, None, None, 0),           # A = nlmsg_len
            (BPF_JMP | BPF_JGE | BPF_K, None, keep, NLMSG_HDRLEN),
            (BPF_ALU | BPF_ADD | BPF_K, None, None, 3),
            (BPF_ALU | BPF_AND | BPF_K, None, None, 0xFFFFFFFC),  # NLMSG_ALIGN
            (BPF_LDX | BPF_W | BPF_MEM, None, None, 0),
            (BPF_ALU | BPF_ADD | BPF_X, None, None, 0),
            (BPF_ST, None, None, 0),                             # offset of the next message
            (BPF_JMP | BPF_JA, None, None, nxt),                 # type: ignore[list-item]
            keep, (BPF_RET | BPF_K, None, None, KEEP),
            drop, (BPF_RET | BPF_K, None, None, DROP),
            nxt,
        ]
    p += [                                                       # all walked: the end, or more than that
        (BPF_LDX | BPF_W | BPF_MEM, None, None, 0),
        (BPF_LD | BPF_W | BPF_LEN, None, None, 0),
        (BPF_JMP | BPF_JEQ | BPF_X, "end", None, 0),
        (BPF_RET | BPF_K, None, None, KEEP),
        "end", (BPF_RET | BPF_K, None, None, DROP),
    ]
    return _assemble(p)


def attach_hiding(sock: socket.socket, types: Sequence[int]) -> bool:
    """Attach the filter to `sock`; False (and nothing attached) where the kernel or this
    Python can't, so the reader must still skip those messages itself."""
    try:
        import array
    except ImportError:
        return False
    prog = hide_program(types)
    buf = array.array("B", b"".join(struct.pack("=HBBI", *i) for i in prog))
    fprog = struct.pack("@HP", len(prog), buf.buffer_info()[0])       # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True
