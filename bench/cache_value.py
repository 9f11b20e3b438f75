"""What the core's module-level caches are worth: in the engine alone, and through the daemon.

The core keeps a few bounded caches keyed by bytes seen before (start lines,
Via heads, name-addr values, SDP lines, address texts).  They are process-wide
state in a pure core, so each must earn its place through the daemon's
whole packet path, not the engine's alone.  This prints, for the same SIP
mix (a registration and a call per phone, several phones), the cost per
message with the caches and with every one of them disabled:

  engine   Engine.handle() in this process (CPU time per message)
  daemon   the real daemon in the lab, SIP through the real NFQUEUE (root):
           the daemon's CPU time (utime+stime from /proc) per queued packet

Runs interleave on/off so machine noise hits both.  A benchmark, not a test.

    python3 bench/cache_value.py [--rounds N] [--phones N] [--engine-only]
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CACHES = (("alg.core.via", "_SENT_BY"), ("alg.core.nameaddr", "_LISTED"), ("alg.core.nameaddr", "_SINGLE"),
          ("alg.core.addr", "_cache"), ("alg.core.addr", "_text_cache"), ("alg.core.grammar", "_SHAPES"),
          ("alg.core.grammar", "_GOOD"), ("alg.core.grammar", "_HEADS"))


class Forgetful(dict):
    """A cache that never keeps anything: every lookup misses."""

    def __setitem__(self, key, value):
        pass


class ForgetfulSet(set):
    def add(self, item):
        pass


def disable_caches():
    import importlib
    for mod, name in CACHES:
        m = importlib.import_module(mod)
        if hasattr(m, name):
            setattr(m, name, ForgetfulSet() if isinstance(getattr(m, name), set) else Forgetful())


def messages(phones):
    """(direction, src, dst, payload) for one registration and one call per phone."""
    from alg.core.engine import OUT, IN
    server = ("203.0.113.10", 5060)
    out = []
    for p in range(phones):
        ip = "10.0.0.%d" % (2 + p)
        wan = ("203.0.113.1", 5060 + p)
        cid = "c%d@%s" % (p, ip)
        sdp = ("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 8\r\n"
               "a=rtpmap:0 PCMU/8000\r\n" % (ip, ip, 6000 + 2 * p)).encode()
        far = ("v=0\r\no=- 2 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
               "m=audio %d RTP/AVP 0\r\n" % (20000 + 2 * p)).encode()
        via = "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%%s;rport\r\n" % ip
        via_in = "Via: SIP/2.0/UDP 203.0.113.1:%d;branch=z9hG4bK%%s;rport=%d;received=203.0.113.1\r\n" % (
            wan[1], wan[1])
        hdr = "From: <sip:u%d@203.0.113.10>;tag=a\r\nTo: <sip:bob@203.0.113.10>%%s\r\nCall-ID: %s\r\n" % (p, cid)

        def req(method, branch, cseq, to_tag="", body=b"", contact=True):
            h = ("%s sip:bob@203.0.113.10 SIP/2.0\r\n" % method + via % branch + hdr % to_tag +
                 "CSeq: %d %s\r\n" % (cseq, method) + ("Contact: <sip:u%d@%s:5060>\r\n" % (p, ip) if contact else ""))
            if body:
                h += "Content-Type: application/sdp\r\n"
            return (h + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body

        def resp(code, branch, cseq, method, body=b""):
            h = ("SIP/2.0 %d OK\r\n" % code + via_in % branch + hdr % ";tag=b" + "CSeq: %d %s\r\n" % (cseq, method) +
                 "Contact: <sip:bob@203.0.113.10>\r\n")
            if body:
                h += "Content-Type: application/sdp\r\n"
            return (h + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body

        out += [(OUT, (ip, 5060), server, req("REGISTER", "r%d" % p, 1).replace(b"INVITE", b"REGISTER")),
                (IN, server, wan, resp(200, "r%d" % p, 1, "REGISTER")),
                (OUT, (ip, 5060), server, req("INVITE", "i%d" % p, 2, body=sdp)),
                (IN, server, wan, resp(100, "i%d" % p, 2, "INVITE")),
                (IN, server, wan, resp(180, "i%d" % p, 2, "INVITE")),
                (IN, server, wan, resp(200, "i%d" % p, 2, "INVITE", far)),
                (OUT, (ip, 5060), server, req("ACK", "a%d" % p, 2, ";tag=b", contact=False)),
                (OUT, (ip, 5060), server, req("BYE", "b%d" % p, 3, ";tag=b", contact=False)),
                (IN, server, wan, resp(200, "b%d" % p, 3, "BYE"))]
    return out


def engine_cost(rounds, phones, off):
    """CPU microseconds per message in a fresh process (caches on or off)."""
    code = ("import sys,time;sys.path.insert(0,%r);sys.argv=['x'];import bench.cache_value as c\n"
            "%s\n"
            "from alg.core.config import Config\nfrom alg.core.engine import Engine\n"
            "msgs=c.messages(%d)\nn=0\nt0=time.process_time()\n"
            "for r in range(%d):\n e=Engine(Config(wan_ip='203.0.113.1',lan_nets=['10.0.0.0/24']))\n"
            " for d,s,t,p in msgs:\n  e.handle(d,s,t,p,r*10.0)\n  n+=1\n"
            "print((time.process_time()-t0)*1e6/n)\n"
            % (ROOT, "c.disable_caches()" if off else "", phones, rounds))
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, cwd=ROOT)
    return float(r.stdout)


def daemon_cost(rounds, phones, off):
    """The daemon's CPU microseconds per queued packet, SIP through the real queue in the lab."""
    from tests.support.lab.netns import Lab, SERVER
    from tests.support.lab.peers import Alg
    with Lab(tag="cachev") as lab:
        for p in range(phones):            # the phones' addresses on the first phone's namespace
            if p:
                lab.run(lab.ph1, "ip", "addr", "add", "10.0.0.%d/24" % (2 + p), "dev", "eth0")
        logdir = "/tmp/sipalg-cache-value"
        os.makedirs(logdir, exist_ok=True)
        wrapper = ["-c", "import bench.cache_value as c; c.disable_caches(); from alg.cli import main; "
                         "import sys; sys.exit(main(sys.argv[1:]))"] if off else None
        alg = Alg(lab, logdir, "--log-level", "info", python_args=wrapper).start()
        try:
            pid = alg.proc.pid            # `ip netns exec` execs python: the daemon itself

            def cpu():
                with open("/proc/%d/stat" % pid) as f:
                    st = f.read().rsplit(")", 1)[1].split()
                return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
            code = ("import socket,sys,time\nsys.path.insert(0,%r)\nimport bench.cache_value as c\n"
                    "from alg.core.engine import OUT\nsocks={}\n"
                    "for r in range(%d):\n for d,s,t,p in c.messages(%d):\n"
                    "  if d!=OUT: continue\n"
                    "  k=s[0]\n  if k not in socks:\n   x=socket.socket(2,2);x.bind((k,5060));socks[k]=x\n"
                    "  socks[k].sendto(p.replace(b'branch=z9hG4bK', b'branch=z9hG4bK%%d.' %% r),(%r,5060))\n"
                    "  time.sleep(0.0005)\n" % (ROOT, rounds, phones, SERVER))
            idle0, t0 = cpu(), time.monotonic()
            time.sleep(3.0)
            idle = (cpu() - idle0) / (time.monotonic() - t0)          # the loop's own ticks, per second
            queued0 = alg.status()["counters"]["queued"]
            before, t0 = cpu(), time.monotonic()
            lab.run(lab.ph1, sys.executable, "-c", code, timeout=600, cwd=ROOT)
            time.sleep(0.5)
            spent = cpu() - before - idle * (time.monotonic() - t0)
            queued = alg.status()["counters"]["queued"] - queued0
            return spent * 1e6 / max(1, queued), queued
        finally:
            alg.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--phones", type=int, default=4)
    ap.add_argument("--engine-only", action="store_true")
    args = ap.parse_args()
    print("engine alone: CPU us per message (%d rounds x %d phones x 9 messages), on / off, interleaved"
          % (args.rounds, args.phones))
    on, off = [], []
    for _ in range(3):
        on.append(engine_cost(args.rounds, args.phones, False))
        off.append(engine_cost(args.rounds, args.phones, True))
    print("  caches on  %s   median %.1f" % (" ".join("%.1f" % x for x in on), sorted(on)[1]))
    print("  caches off %s   median %.1f" % (" ".join("%.1f" % x for x in off), sorted(off)[1]))
    if args.engine_only or os.geteuid() != 0:
        return
    print("through the daemon: its CPU us per queued SIP packet (outbound messages of the same mix)")
    for label, flag in (("caches on", False), ("caches off", True), ("caches on", False), ("caches off", True)):
        us, n = daemon_cost(max(20, args.rounds // 5), args.phones, flag)
        print("  %-10s %7.1f us  (%d packets)" % (label, us, n))


if __name__ == "__main__":
    main()
