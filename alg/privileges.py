"""After start, the daemon runs as an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW only.

Everything that needs root happens before (table installed, queue bound,
conntrack helper registered, raw socket open, LEDs taken); after it the
daemon still needs:

* CAP_NET_ADMIN: every nfnetlink message (nf_tables elements, ctnetlink,
  the queue's verdicts and config), and the `nft -f` / `iptables` it runs to
  rebuild its table after `fw4 flush` or `nft flush ruleset`.
* CAP_NET_RAW: iptables' own raw socket on the NFQUEUE fallback (kernels
  without nft_queue) and a keep-alive socket opened again; the one opened at
  start needs nothing more to send.

Both are also raised into the ambient set, so the `nft` and `iptables` the
daemon starts (plain binaries, no file capabilities) keep them across
execve; every other capability leaves the bounding set first, and
no_new_privs is set, so nothing it runs can gain more.  What it no longer
has: writing files it doesn't own (/etc/config, sysfs: the init script
makes its state directory and LEDs its own, and gives it a copy of its
config to re-read), loading modules, ptrace.

OpenWrt's python3-light has no ctypes; prctl() and capset() need it, so the
package depends on python3-ctypes (a feed package, as tunneldigger-broker
and fail2ban do).  procd can do the same through ujail (`user` and
`capabilities` need a jail, procd service/instance.c jail_run()); the init
script asks for that where /sbin/ujail exists, and then the daemon starts
unprivileged and only checks what it holds.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW)
NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}

# linux/prctl.h, linux/capability.h
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(RuntimeError):
    pass


def mask(caps: Iterable[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def status(pid: str = "self") -> Dict[str, str]:
    """/proc/PID/status as a dict (Uid, Gid, CapEff, CapPrm, CapInh, CapBnd, CapAmb, NoNewPrivs...)."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _libc():
    try:
        import ctypes
    except ImportError:
        raise PrivilegeError("python3-ctypes is not installed (prctl and capset need it)") from None
    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        if getattr(libc, name)(*args) != 0:
            e = ctypes.get_errno()
            raise PrivilegeError("%s: %s" % (name, os.strerror(e)))
    return ctypes, libc, call


def _capset(ctypes, libc, call, keep: int) -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    low, high = keep & 0xFFFFFFFF, keep >> 32
    data = (Data * 2)(Data(low, low, low), Data(high, high, high))
    call("capset", ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), data)


def drop(user: str, keep: Iterable[int] = KEEP) -> str:
    """Become `user` keeping only `keep` (effective, permitted, inheritable and ambient); returns what
    was done, for the log.  Already unprivileged (procd's jail did it): only checks the caps held."""
    keep = tuple(keep)
    want = mask(keep)
    if os.geteuid() != 0:
        eff = int(status().get("CapEff", "0"), 16)
        if eff & want != want:
            raise PrivilegeError("running as uid %d without %s" % (os.geteuid(), ", ".join(
                NAMES.get(c, str(c)) for c in keep if not eff & (1 << c))))
        return "already unprivileged (uid %d), holding %s" % (os.geteuid(), describe(eff))
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError("no user %r on this system (the package creates it)" % user) from None
    if pw.pw_uid == 0:
        raise PrivilegeError("user %r is root" % user)
    ctypes, libc, call = _libc()
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            call("prctl", PR_CAPBSET_DROP, cap, 0, 0, 0)
    call("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    _capset(ctypes, libc, call, want)
    for cap in keep:
        call("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    call("prctl", PR_SET_KEEPCAPS, 0, 0, 0, 0)
    call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    st = status()
    eff = int(st.get("CapEff", "0"), 16)
    if os.getuid() == 0 or os.geteuid() == 0 or eff != want:
        raise PrivilegeError("still uid %d, CapEff %s after the drop" % (os.geteuid(), st.get("CapEff")))
    return "now user %s (uid %d), holding %s" % (user, pw.pw_uid, describe(eff))


def describe(caps_mask: int) -> str:
    names = [NAMES.get(c, "cap %d" % c) for c in range(64) if caps_mask & (1 << c)]
    return ", ".join(names) or "no capabilities"


def own(path: Optional[str], user: str) -> None:
    """Make a directory the daemon writes to after the drop its user's (created if missing); root only."""
    if not path or os.geteuid() != 0:
        return
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return
    os.makedirs(path, exist_ok=True)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def own_files(paths: Iterable[str], user: str) -> None:
    """Files the daemon writes after the drop (its LEDs' trigger and brightness) made its user's."""
    if os.geteuid() != 0:
        return
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return
    for p in paths:
        try:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        except OSError:
            pass


def may_run() -> bool:
    """Root, or started unprivileged holding what the daemon needs (procd's jail)."""
    if os.geteuid() == 0:
        return True
    try:
        eff = int(status().get("CapEff", "0"), 16)
    except (OSError, ValueError):
        return False
    return eff & mask(KEEP) == mask(KEEP)
