"""Processes in the lab: the ALG daemon, sipp, kamailio, RTP, packet captures.

Each runs inside one namespace, logs into the run's directory, and is
stopped by the Lab (which kills whatever is left in its namespaces).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from alg.kernel.nftjson import table_elements
from tests.support import ROOT
from tests.support.lab.netns import Lab, ROUTER_WAN, SERVER

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
# Slow motion for a slow machine (the QEMU VM under TCG sets 2-3): call durations, echo windows
# and waits for peers last SLOW times longer; the tests' own waits scale the same way there.
SLOW = float(os.environ.get("SIPALG_LAB_SLOW", "1"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_config(path, **opts):
    """The uci file as LuCI writes it: option NAME 'VALUE', lists for list values, a leds section."""
    leds = opts.pop("leds", None)
    lines = ["config sipalg 'main'"]
    for k, v in opts.items():
        for item in (v if isinstance(v, list) else [v]):
            lines.append("\t%s %s '%s'" % ("list" if isinstance(v, list) else "option", k, item))
    if leds:
        lines.append("\nconfig leds 'leds'")
        lines += ["\toption %s '%s'" % kv for kv in leds.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Alg:
    """`sipalg run` in the router namespace."""

    def __init__(self, lab: Lab, logdir: str, *extra: str, table: str = "sipalg",
                 env: Optional[Dict[str, str]] = None, config: Optional[str] = None,
                 python_args: Optional[List[str]] = None, python: Optional[str] = None,
                 state_dir: Optional[str] = None):
        """config: a uci file that alone says everything (no --wan-if/--lan-if/--log-level flags),
        so a reload can change any option; else those come as flags.  python: the interpreter (one
        whose library an unprivileged user can read, for --user); state_dir: instead of LOGDIR/state."""
        self.lab = lab
        self.env = dict(env or {})                         # e.g. SIPALG_QUEUE_BACKEND=netlink
        self.python = python or sys.executable
        self.state_dir = state_dir or os.path.join(logdir, "state")
        self.log_path = os.path.join(logdir, "sipalg.log")
        if config is None:
            self.args = ["--wan-if", lab.wan_if, "--lan-if", lab.lan_if, "--state-dir", self.state_dir,
                         "--log-level", "debug", "--table", table] + list(extra)
        else:
            self.args = ["--config", config, "--state-dir", self.state_dir, "--table", table] + list(extra)
        self.table = table
        # how python starts the command line (a benchmark may wrap it: ["-c", "...; alg.cli.main()"])
        self.python_args = python_args or ["-m", "alg"]
        self.proc: Optional[subprocess.Popen] = None
        # the router's rules before the daemon (tests that change them themselves call note_rules())
        self.baseline: Optional[str] = None

    def start(self, wait: float = 10.0) -> "Alg":
        if self.baseline is None:
            self.baseline = router_rules(self.lab, self.table)
        log = open(self.log_path, "a")
        status = os.path.join(self.state_dir, "status.json")
        if os.path.exists(status):
            os.unlink(status)
        self.proc = self.lab.popen(self.lab.rtr, self.python, *self.python_args, "run", *self.args,
                                   stdout=log, stderr=log, env=dict(_env(), **self.env), cwd=ROOT)
        deadline = time.monotonic() + wait
        while not os.path.exists(status):
            if self.proc.poll() is not None:
                raise RuntimeError("sipalg exited with %d:\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise RuntimeError("sipalg did not start:\n" + self.log())
            time.sleep(0.1)
        return self

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def status(self) -> dict:
        """status.json with the clock its absolute times are read against, as `sipalg status --json` gives it."""
        time.sleep(1.2)                                    # a change is published within a second
        with open(os.path.join(self.state_dir, "status.json")) as f:
            return dict(json.load(f), now=int(time.time()))

    def reload(self, wait: float = 1.5) -> None:
        """SIGHUP, as reload_config sends it, and time to act on it."""
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(wait)

    def note_rules(self) -> None:
        """The test changed the router's rules itself: these are what the daemon must leave behind,
        but for what is the daemon's (its table, and the iptables fallback's mangle rules, which
        stay as they were before it started)."""
        now = router_rules(self.lab, self.table)
        self.baseline = _with_mangle_of(now, self.baseline) if self.baseline is not None else now

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the daemon; after SIGTERM the router's rules (nft, iptables, iptables-legacy) must be
        exactly what they were before it started."""
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        rc = self.proc.wait(10)
        self.proc = None
        if sig == signal.SIGTERM and self.baseline is not None:
            left = router_rules(self.lab, self.table, ours_too=True)
            if left != self.baseline:              # compare the mangle parts where they stand
                left = _with_mangle_of(left, left)
            assert left == _with_mangle_of(self.baseline, self.baseline), "the daemon left the router changed:\n%s" % "\n".join(
                difflib.unified_diff(self.baseline.splitlines(), left.splitlines(), "before", "after", lineterm=""))
        return rc

    def kernel_table(self) -> dict:
        return kernel_table(self.lab, self.table)


_NFT_MANGLE = re.compile(r"(?ms)^table ip mangle \{\n.*?^\}\n")
_IPT_MANGLE = re.compile(r"(?ms)^\*mangle\n.*?^COMMIT\n?")


def _with_mangle_of(rules: str, before: str) -> str:
    """rules, with the mangle table (nft's and iptables-save's) as it is in before."""
    parts, old = rules.split("\n--\n"), before.split("\n--\n")
    for i, pat in ((0, _NFT_MANGLE), (1, _IPT_MANGLE)):
        kept = "".join(pat.findall(old[i]))
        parts[i] = pat.sub("", parts[i]) + kept
    return "\n--\n".join(parts)


def router_rules(lab: Lab, table: str, ours_too: bool = False) -> str:
    """The router's firewall as text: `nft -s list ruleset` (without the daemon's own table unless
    ours_too), `iptables-save` and `iptables-legacy-save` with packet counters left out."""
    out = []
    nft = lab.run(lab.rtr, "nft", "-s", "list", "ruleset", check=False).stdout.decode()
    if not ours_too:
        nft = re.sub(r"(?ms)^table ip %s \{\n.*?^\}\n" % re.escape(table), "", nft)
    out.append(nft)
    for cmd in ("iptables-save", "iptables-legacy-save"):
        r = lab.run(lab.rtr, cmd, check=False)
        text = r.stdout.decode() if r.returncode == 0 else ""
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
        out.append(re.sub(r"\[\d+:\d+\]", "[-]", text))
    return "\n--\n".join(out)


def kernel_table(lab: Lab, table: str) -> dict:
    """The router's table `ip TABLE`: its maps and sets as {name: [elements]} (empty when it's gone)."""
    r = lab.run(lab.rtr, "nft", "-j", "list", "table", "ip", table, check=False)
    return table_elements(r.stdout) if r.returncode == 0 else {}


class Sipp:
    def __init__(self, lab: Lab, ns: str, scenario: str, local_ip: str, logdir: str, remote: Optional[str] = None,
                 port: int = 5060, rtp: int = 6000, duration_ms: int = 2000, calls: int = 1,
                 extra: Optional[List[str]] = None, name: str = "sipp"):
        sf = scenario if os.path.isabs(scenario) else os.path.join(SCENARIOS, scenario)
        self.args = ["sipp", "-sf", sf, "-i", local_ip, "-p", str(port), "-m", str(calls),
                     "-key", "rtp", str(rtp), "-d", str(int(duration_ms * SLOW)), "-mp", str(16000 + port % 1000 * 2),
                     "-timeout", "%ds" % (30 * SLOW), "-timeout_error", "-nostdin", "-s", "bob"] + (extra or [])
        # e.g. "-nr" in the QEMU VM (qemu/guest): under TCG a response can take longer than T1
        self.args += os.environ.get("SIPALG_LAB_SIPP_ARGS", "").split()
        if remote:
            self.args.append(remote)
        self.lab, self.ns = lab, ns
        self.log_path = os.path.join(logdir, name + ".log")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Sipp":
        self.proc = self.lab.popen(self.ns, *self.args, stdout=subprocess.DEVNULL,
                                   stderr=open(self.log_path, "w"), cwd=os.path.dirname(self.log_path))
        return self

    def wait(self, timeout: float = 40) -> int:
        return self.proc.wait(timeout * SLOW)


COUNT = ("import socket,sys;s=socket.socket(2,2);s.setsockopt(1,33,1<<25);s.bind((sys.argv[1],int(sys.argv[2])))\n"
         "s.settimeout(float(sys.argv[3]));print('ready',file=sys.stderr,flush=True)\nmine=other=0;ids=set()\n"
         "while True:\n try: d,a=s.recvfrom(65535)\n except OSError: break\n"
         " if b'Via: SIP/2.0/UDP %s:' in d: mine+=1\n else: other+=1\n"
         " i=d.find(b'Call-ID: ');ids.add(d[i:d.find(b'\\r',i)])\n"
         "print(mine,other,len(ids))" % ROUTER_WAN)


class Counter:
    """A receiver counting the SIP datagrams that reach (ip, port) in ns until `idle` seconds pass
    without one: how many name the router's WAN address in their top Via (rewritten), how many
    don't, and how many distinct Call-IDs came (a flood numbers its datagrams by Call-ID)."""

    def __init__(self, lab: Lab, ns: str, addr, idle: float = 5.0):
        self.proc = lab.popen(ns, sys.executable, "-c", COUNT, addr[0], str(addr[1]), str(idle * SLOW),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stderr.readline()

    def result(self, timeout: float = 60.0):
        """(rewritten, other, distinct Call-IDs), once the datagrams have stopped coming."""
        out = self.proc.communicate(timeout=timeout * SLOW)[0].split()
        return int(out[0]), int(out[1]), int(out[2])


class RtpEcho:
    def __init__(self, lab: Lab, ns: str, ip: str, port: int, seconds: float):
        self.proc = lab.popen(ns, sys.executable, "-m", "tests.support.lab.rtp", "echo", ip, str(port), str(seconds * SLOW),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
        self.proc.stderr.readline()                        # "ready"

    def result(self, timeout: float = 30) -> dict:
        out, _ = self.proc.communicate(timeout=timeout * SLOW)
        return json.loads(out)


def rtp_send(lab: Lab, ns: str, src: tuple, dst: tuple, count: int, interval: float = 0.02) -> dict:
    r = lab.run(ns, sys.executable, "-m", "tests.support.lab.rtp", "send", src[0], str(src[1]), dst[0], str(dst[1]),
                str(count), str(interval), timeout=count * interval + 30, env=_env(), cwd=ROOT)
    return json.loads(r.stdout)


def rtp_send_bg(lab: Lab, ns: str, src: tuple, dst: tuple, count: int, interval: float = 0.02) -> subprocess.Popen:
    return lab.popen(ns, sys.executable, "-m", "tests.support.lab.rtp", "send", src[0], str(src[1]), dst[0], str(dst[1]),
                     str(count), str(interval), stdout=subprocess.PIPE, env=_env(), cwd=ROOT)


class Capture:
    """tcpdump on an interface of a namespace; packets() reads it back (dpkt)."""

    def __init__(self, lab: Lab, ns: str, iface: str, path: str, bpf: str = "udp"):
        self.path = path
        # --immediate-mode: with TPACKET_V3 the last ~1 s of packets sits in a ring block that
        # SIGINT discards; immediate mode hands each packet over (and -U writes it) at once
        self.proc = lab.popen(ns, "tcpdump", "-i", iface, "-U", "--immediate-mode", "-n", "-w", path, bpf,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc.stderr.readline()                        # "listening on ..."

    def packets(self):
        """[(src, sport, dst, dport, payload)] of the UDP/IPv4 packets seen."""
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        import dpkt
        from alg.packet import parse_udp
        out = []
        with open(self.path, "rb") as f:
            for _, frame in dpkt.pcap.Reader(f):
                d = parse_udp(bytes(frame)[14:])
                if d is not None:
                    out.append((d.src, d.sport, d.dst, d.dport, d.payload))
        return out


def send_udp(lab: Lab, ns: str, src: tuple, dst: tuple, payload: bytes) -> None:
    ArmedSend(lab, ns, src, dst, payload).fire()


def exchange_udp(lab: Lab, ns: str, local: tuple, remote: tuple, payload: bytes, timeout: float = 3.0):
    """Send one datagram and wait for one answer on the same socket: ((ip, port), payload) or None."""
    code = ("import socket,sys;s=socket.socket(2,2);s.bind((%r,%d));s.settimeout(%f);"
            "s.sendto(sys.stdin.buffer.read(),(%r,%d))\ntry:\n d,a=s.recvfrom(65535)\n"
            " sys.stdout.buffer.write(('%%s %%d\\n'%%a).encode()+d)\nexcept OSError: pass"
            % (local[0], local[1], timeout, remote[0], remote[1]))
    r = lab.run(ns, sys.executable, "-c", code, input=payload, timeout=timeout + 10)
    if not r.stdout:
        return None
    head, _, data = r.stdout.partition(b"\n")
    ip, port = head.decode().split()
    return (ip, int(port)), data


def recv_udp(lab: Lab, ns: str, local: tuple, timeout: float = 5.0) -> subprocess.Popen:
    """Start a one-datagram receiver; .communicate() gives 'ip port time\\n' + payload."""
    code = ("import socket,sys,time;s=socket.socket(2,2);s.setsockopt(1,2,1);s.bind((%r,%d));s.settimeout(%f);"
            "print('ready',file=sys.stderr,flush=True);d,a=s.recvfrom(65535);t=time.time();"
            "sys.stdout.buffer.write(('%%s %%d %%.6f\\n'%%(a+(t,))).encode()+d)" % (local[0], local[1], timeout))
    p = lab.popen(ns, sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.recv_timeout = timeout
    p.stderr.readline()
    return p


def received(p: subprocess.Popen):
    """recv_udp's datagram: ((ip, port), payload), or None when none came in its time."""
    got = received_at(p)
    return got and got[:2]


def received_at(p: subprocess.Popen):
    """recv_udp's datagram and when it came: ((ip, port), payload, time.time()), or None."""
    out, _ = p.communicate(timeout=p.recv_timeout + 10)
    if not out:
        return None
    head, _, payload = out.partition(b"\n")
    ip, port, at = head.decode().split()
    return (ip, int(port)), payload, float(at)


class ArmedSend:
    """A one-datagram sender started ahead (a process start is seconds under TCG), sent by fire().

    For tests where the moment of the send matters: fire() returns the sender's time.time()
    just before the sendto, for comparing with received_at()'s."""

    def __init__(self, lab: Lab, ns: str, src: tuple, dst: tuple, payload: bytes):
        code = ("import socket,sys,time;s=socket.socket(2,2);s.setsockopt(1,2,1);s.bind((%r,%d));"
                "d=sys.stdin.buffer.read(%d);print('ready',flush=True);sys.stdin.readline();t=time.time();"
                "s.sendto(d,(%r,%d));print('%%.6f'%%t,flush=True)" % (src[0], src[1], len(payload), dst[0], dst[1]))
        self.proc = lab.popen(ns, sys.executable, "-c", code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.proc.stdin.write(payload)
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == b"ready\n"

    def fire(self) -> float:
        out, _ = self.proc.communicate(b"\n", timeout=30)
        assert self.proc.returncode == 0, out
        return float(out)


__all__ = ["Alg", "Sipp", "RtpEcho", "Capture", "rtp_send", "rtp_send_bg", "send_udp", "recv_udp", "received",
           "received_at", "ArmedSend",
           "ROUTER_WAN", "SERVER"]


KAMAILIO_CFG = """#!KAMAILIO
# Registrar and proxy for the lab: no NAT helpers at all, so what it sees is what the ALG made.
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
listen=udp:{ip}:{port}
mpath="{mpath}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_INFO", "$rm from $si:$sp ruri=$ru contact=$hdr(Contact)\\n");
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); exit; }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


class Kamailio:
    """kamailio as registrar and proxy on the WAN server, in the foreground."""

    def __init__(self, lab: Lab, logdir: str, ip: str = SERVER, port: int = 5060):
        import glob
        mods = glob.glob("/usr/lib/*/kamailio/modules") + glob.glob("/usr/lib/kamailio/modules")
        self.dir = os.path.join(logdir, "kamailio")
        os.makedirs(self.dir, exist_ok=True)
        self.cfg = os.path.join(self.dir, "kamailio.cfg")
        with open(self.cfg, "w") as f:
            f.write(KAMAILIO_CFG.format(ip=ip, port=port, mpath=mods[0] if mods else "/usr/lib/kamailio/modules"))
        self.lab = lab
        self.log_path = os.path.join(self.dir, "kamailio.log")
        self.proc: Optional[subprocess.Popen] = None

    def start(self, wait: float = 10.0) -> "Kamailio":
        self.proc = self.lab.popen(self.lab.wan, "kamailio", "-f", self.cfg, "-DD", "-E", "-P",
                                   os.path.join(self.dir, "pid"), "-Y", self.dir,
                                   stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))
        deadline = time.monotonic() + wait
        while "INFO" not in self.log() or "ERROR" in self.log():
            if self.proc.poll() is not None or "ERROR" in self.log():
                raise RuntimeError("kamailio failed:\n" + self.log()[-2000:])
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        return self

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()
