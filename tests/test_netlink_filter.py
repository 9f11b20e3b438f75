"""The monitor's socket filter, run by a small classic-BPF interpreter on datagrams of either byte
order (big-endian routers exist: the kernel test in tests/lab/ only sees this host's).

The interpreter follows the kernel's rules for what the program uses: loads past the
datagram's end return 0 (the datagram dropped), so the program must never make one.
"""

import struct

import pytest

from alg.kernel import netlink_filter as F

NEWSETELEM, DELSETELEM, NEWGEN, DELRULE, NEWTABLE = 0x0A0C, 0x0A0E, 0x0A0F, 0x0A08, 0x0A00
HIDDEN = [NEWSETELEM, DELSETELEM, NEWGEN]


class OutOfRange(Exception):
    pass


def run(prog, pkt):
    """The program's return value for datagram `pkt` (0: dropped)."""
    a = x = 0
    mem = [None] * 16
    pc = 0

    def load(off, size):
        if off < 0 or off + size > len(pkt):
            raise OutOfRange()
        return int.from_bytes(pkt[off:off + size], "big")

    try:
        while True:
            code, jt, jf, k = prog[pc]
            pc += 1
            cls = code & 0x07
            if cls == F.BPF_RET:
                return k
            if cls == F.BPF_LD:
                mode, size = code & 0xE0, {F.BPF_W: 4, F.BPF_H: 2, F.BPF_B: 1}[code & 0x18]
                if mode == F.BPF_IMM:
                    a = k
                elif mode == F.BPF_LEN:
                    a = len(pkt)
                elif mode == F.BPF_IND:
                    a = load(x + k, size)
                elif mode == F.BPF_MEM:
                    assert mem[k] is not None, "M[%d] read before it was written" % k
                    a = mem[k]
                else:
                    raise AssertionError("load mode %#x" % mode)
            elif cls == F.BPF_LDX:
                assert code & 0xE0 == F.BPF_MEM and mem[k] is not None
                x = mem[k]
            elif cls == F.BPF_ST:
                mem[k] = a
            elif cls == F.BPF_ALU:
                v = x if code & F.BPF_X else k
                op = code & 0xF0
                assert op != F.BPF_LSH or v < 32
                a = (a + v if op == F.BPF_ADD else a - v if op == F.BPF_SUB else a | v if op == F.BPF_OR
                     else a & v if op == F.BPF_AND else a << v) & 0xFFFFFFFF
            elif cls == F.BPF_JMP:
                op = code & 0xF0
                if op == F.BPF_JA:
                    pc += k
                    continue
                v = x if code & F.BPF_X else k
                ok = {F.BPF_JEQ: a == v, F.BPF_JGT: a > v, F.BPF_JGE: a >= v}[op]
                pc += jt if ok else jf
            else:
                raise AssertionError("class %d" % cls)
    except OutOfRange:
        return 0


def msg(mtype, body=b"\0" * 20, order="<", length=None):
    n = 16 + len(body) if length is None else length
    raw = struct.pack(order + "IHHII", n, mtype, 0, 1, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


@pytest.mark.parametrize("order", ["little", "big"])
def test_datagrams_of_hidden_messages_only_are_dropped_and_nothing_else(order):
    prog = F.hide_program(HIDDEN, order)
    o = "<" if order == "little" else ">"
    assert len(prog) < 4096                                           # BPF_MAXINSNS
    assert run(prog, msg(NEWSETELEM, order=o)) == F.DROP
    assert run(prog, msg(NEWGEN, b"\0" * 9, o)) == F.DROP             # an odd length, padded
    four = b"".join(msg(t, order=o) for t in (NEWSETELEM, NEWSETELEM, DELSETELEM, NEWSETELEM))
    assert run(prog, four) == F.DROP                                  # one commit's notifications
    assert run(prog, msg(DELRULE, order=o)) == F.KEEP
    assert run(prog, msg(NEWSETELEM, order=o) + msg(DELRULE, order=o)) == F.KEEP   # a removal behind elements
    assert run(prog, msg(NEWTABLE, order=o) + msg(NEWSETELEM, order=o)) == F.KEEP
    many = b"".join(msg(NEWSETELEM, order=o) for _ in range(F.MAX_MESSAGES))
    assert run(prog, many) == F.DROP
    assert run(prog, many + msg(NEWSETELEM, order=o)) == F.KEEP       # more than it walks: kept


@pytest.mark.parametrize("order", ["little", "big"])
def test_what_does_not_parse_is_kept(order):
    prog = F.hide_program(HIDDEN, order)
    o = "<" if order == "little" else ">"
    good = msg(NEWSETELEM, order=o)
    assert run(prog, good + b"\0" * 8) == F.KEEP                      # a header cut short
    assert run(prog, msg(NEWSETELEM, order=o, length=12)) == F.KEEP   # a length below a header's
    assert run(prog, msg(NEWSETELEM, order=o, length=200)) == F.KEEP  # a length past the end
    assert run(prog, msg(NEWSETELEM, order=o, length=0x10024)) == F.KEEP     # beyond what it reads
    other = "<" if o == ">" else ">"
    assert run(prog, msg(NEWSETELEM, order=other)) == F.KEEP          # the other byte order: not hidden


def test_the_program_is_the_same_for_the_same_types():
    assert F.hide_program(HIDDEN) == F.hide_program(list(HIDDEN))
    with pytest.raises(ValueError):
        F.hide_program([])
