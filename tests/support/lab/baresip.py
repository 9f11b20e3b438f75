"""baresip as a real user agent in the lab, driven over its ctrl_tcp socket.

Each Baresip gets its own config directory (config, accounts) under the run's
log directory and runs in one namespace with no sound card: a sine tone
(ausine) is its microphone and a dangling aubridge device its loudspeaker, so
it sends and receives real G.711 RTP. The ctrl_tcp module listens on the
namespace's own loopback; we reach it by opening the socket from a thread that
has joined that network namespace (setns), so no helper process is needed.

ctrl_tcp speaks netstrings of JSON: requests {"command", "params", "token"},
answers {"response": true, "ok", "data", "token"}, and events
{"event": true, "type": "REGISTER_OK" | "CALL_INCOMING" | "CALL_ESTABLISHED" |
"CALL_CLOSED" | ..., ...}.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import threading
import time
from typing import List, Optional

from tests.support.lab.netns import Lab

MODULE_PATH = "/usr/lib/baresip/modules"
CLONE_NEWNET = 0x40000000

CONFIG = """# written by tests.support.lab.baresip: headless UA for the sipalg lab
poll_method		epoll
sip_listen		{ip}:{port}
call_local_timeout	30
call_max_calls		4
audio_player		aubridge,{name}-speaker
audio_alert		aubridge,{name}-alert
audio_source		ausine,{tone}
ausrc_srate		48000
ausrc_channels		2
audio_level		no
audio_buffer		20-160
rtp_ports		{rtp_lo}-{rtp_hi}
rtp_stats		yes
rtcp_mux		no
module_path		{mpath}
module			g711.so
module			ausine.so
module			aubridge.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl}
statmode_default	off
"""


def _connect_in_netns(ns: str, addr: tuple, timeout: float) -> socket.socket:
    """A TCP connection made from inside namespace `ns` (the socket keeps it)."""
    out: dict = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
            finally:
                os.close(fd)
            out["sock"] = socket.create_connection(addr, timeout)
        except Exception as e:                        # noqa: BLE001 (handed back to the caller)
            out["err"] = e

    t = threading.Thread(target=run, daemon=True)     # the thread (and its namespace) ends here
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


class Baresip:
    """One baresip UA in namespace `ns`, listening for SIP on ip:port.

    registrar: "host[:port]" of the registrar (kamailio); the account is
    sip:USER@registrar and baresip registers there. None: no registration
    (the account is sip:USER@ip:port and the UA can still call and be called).
    answer: "auto" answers incoming calls by itself, "manual" waits for accept().
    """

    def __init__(self, lab: Lab, ns: str, ip: str, logdir: str, user: str = "alice", port: int = 5060,
                 registrar: Optional[str] = None, answer: str = "auto", rtp_ports: tuple = (10000, 10019),
                 tone: int = 440, regint: int = 600, ctrl_port: int = 4444, name: Optional[str] = None):
        self.lab, self.ns, self.ip, self.port, self.user = lab, ns, ip, port, user
        self.name = name or "baresip-" + user
        self.dir = os.path.join(logdir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(logdir, self.name + ".log")
        self.ctrl_port = ctrl_port
        domain = registrar or "%s:%d" % (ip, port)
        params = ["answermode=" + answer, "audio_codecs=pcmu", "ptime=20"]
        params.append("regint=%d" % regint if registrar else "regint=0")
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write(CONFIG.format(ip=ip, port=port, name=self.name, tone=tone, rtp_lo=rtp_ports[0],
                                  rtp_hi=rtp_ports[1], mpath=MODULE_PATH, ctrl=ctrl_port))
        # the account is added over ctrl_tcp once we listen, so no event (REGISTER_OK) is missed
        self.account = "<sip:%s@%s>;%s" % (user, domain, ";".join(params))
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write("")
        with open(os.path.join(self.dir, "contacts"), "w") as f:
            f.write("")
        self.proc: Optional[subprocess.Popen] = None
        self.sock: Optional[socket.socket] = None
        self.events: List[dict] = []
        self._responses: dict = {}
        self._cv = threading.Condition()
        self._token = 0
        self._reader: Optional[threading.Thread] = None

    # -- process

    def start(self, wait: float = 10.0) -> "Baresip":
        # -4: the namespaces have IPv4 only; -s: SIP trace into the log; -t: never outlive a run
        self.proc = self.lab.popen(self.ns, "baresip", "-4", "-s", "-f", self.dir, "-t", "300",
                                   stdin=subprocess.DEVNULL, stdout=open(self.log_path, "w"),
                                   stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("baresip exited with %d:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            try:
                self.sock = _connect_in_netns(self.ns, ("127.0.0.1", self.ctrl_port), 2.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("baresip's ctrl_tcp never listened:\n" + self.log()[-3000:])
                time.sleep(0.1)
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        r = self.command("uanew", self.account)
        if not r.get("ok"):
            raise RuntimeError("baresip refused the account %s: %s" % (self.account, r))
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.command("quit", timeout=2)
            except (OSError, TimeoutError, RuntimeError):
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.proc = None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # -- ctrl_tcp

    def _read(self) -> None:
        buf = b""
        sock = self.sock
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cv:
                    self.events.append({"event": True, "type": "_DISCONNECTED"})
                    self._cv.notify_all()
                return
            buf += data
            while True:
                head, colon, rest = buf.partition(b":")
                if not colon or not head.isdigit() or len(rest) < int(head) + 1:
                    break
                n = int(head)
                msg, buf = rest[:n], rest[n + 1:]
                try:
                    obj = json.loads(msg)
                except ValueError:
                    continue
                with self._cv:
                    if obj.get("response"):
                        self._responses[obj.get("token")] = obj
                    else:
                        self.events.append(obj)
                    self._cv.notify_all()

    def command(self, cmd: str, params: Optional[str] = None, timeout: float = 5.0) -> dict:
        """Run a baresip command (as typed at its long-command prompt); its response dict."""
        with self._cv:
            self._token += 1
            token = "t%d" % self._token
        req = {"command": cmd, "token": token}
        if params is not None:
            req["params"] = params
        data = json.dumps(req).encode()
        self.sock.sendall(b"%d:%s," % (len(data), data))
        deadline = time.monotonic() + timeout
        with self._cv:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("baresip did not answer %r" % cmd)
                self._cv.wait(left)
            return self._responses.pop(token)

    def wait_event(self, kind: str, timeout: float = 10.0, since: int = 0) -> dict:
        """The first event of type `kind` (from index `since` of self.events on)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ev in self.events[since:]:
                    if ev.get("type") == kind:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no %s from %s; events: %s\n%s" % (
                        kind, self.name, [e.get("type") for e in self.events], self.log()[-3000:]))
                self._cv.wait(left)

    def seen(self, kind: str) -> List[dict]:
        with self._cv:
            return [e for e in self.events if e.get("type") == kind]

    # -- the phone's buttons

    def dial(self, uri: str) -> dict:
        return self.command("dial", uri)

    def accept(self) -> dict:
        return self.command("accept")

    def hangup(self) -> dict:
        return self.command("hangup")

    def wait_registered(self, timeout: float = 10.0) -> dict:
        return self.wait_event("REGISTER_OK", timeout)

    def rtp_stats(self) -> List[dict]:
        """Per finished call, baresip's own audio counters: [{"tx": packets, "rx": packets}]."""
        out = []
        lines = self.log().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("audio") and "Transmit:" in line and "Receive:" in line:
                for nxt in lines[i + 1:i + 4]:
                    f = nxt.split()
                    if f[:1] == ["packets:"] and len(f) >= 3 and f[1].isdigit() and f[2].isdigit():
                        out.append({"tx": int(f[1]), "rx": int(f[2])})
                        break
        return out


__all__ = ["Baresip"]
