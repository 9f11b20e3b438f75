"""The scenarios `make qemu-test` runs inside the VM, against the installed .ipk.

The lab's own end-to-end tests (tests/lab) run here unchanged, with this
directory's fixtures: the router is the VM itself, the daemon is the
package's /usr/sbin/sipalg started by /etc/init.d/sipalg after a uci edit,
and every test first checks that SIP is queued by an nft `queue` statement
(the Debian 6.1 kernel has nft_queue; the host lab falls back to iptables).
Then what only a VM can show: the package as opkg left it, switching the
service off and on with uci, and calls through fw4 with flow offloading on
(the host kernel has neither flowtables nor userspace conntrack helpers).
"""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from alg.kernel import cthelper
from alg.kernel.ctnetlink import Conntrack, Match
from tests.support.fw4 import fw4_ruleset
from tests.support.lab.messages import options_through
from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Capture, Kamailio, RtpEcho, Sipp, rtp_send, rtp_send_bg
from tests.support.need import need
from tests.support.vm import INIT, VM_MARKER, ServiceAlg, sh, uci_set

LAB_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab")
# Under TCG everything runs 10-50 times slower than on the host the lab's tests were timed on, and
# the daemon answers a queued packet in up to a second or two when the VM is busy.  So the lab
# runs in slow motion here (SIPALG_LAB_SLOW, from sipalg.slow= on the kernel command line, set by
# qemu/run.py): tests.support.lab.peers stretches call durations and echo windows, and the lab
# tests' own clock is dilated the same way: their short waits ("let the INVITE cross the ALG
# before sending RTP") last SLOW times longer and their stopwatch ("fail-open within 2 s") runs
# SLOW times slower.  Waits of 10 s and more wait for kernel timers (conntrack timeouts): kept.
SLOW = float(os.environ.get("SIPALG_LAB_SLOW", "1"))
_modules = {}


class _DilatedTime:
    def __init__(self, factor: float):
        self.factor = factor

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds if seconds >= 10 else seconds * self.factor)

    def monotonic(self) -> float:
        return time.monotonic() / self.factor

    def __getattr__(self, name):
        return getattr(time, name)


def _lab(module: str, name: str):
    """A test function of tests/lab/MODULE.py (loaded by path: its fixtures come from here)."""
    if module not in _modules:
        spec = importlib.util.spec_from_file_location("lab_" + module, os.path.join(LAB_TESTS, module + ".py"))
        _modules[module] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_modules[module])
        if SLOW != 1:
            _modules[module].time = _DilatedTime(SLOW)
    return getattr(_modules[module], name)


# -- the package as opkg and the first boot left it

def test_package_installed_like_opkg_and_idle_until_enabled():
    need_vm()
    info = "/usr/lib/opkg/info/sipalg."
    with open(info + "list") as f:
        listed = f.read().split()
    for path in ("/usr/sbin/sipalg", "/etc/init.d/sipalg", "/etc/config/sipalg",
                 "/usr/lib/sipalg/alg/daemon.py", "/usr/share/sipalg/forward-pinholes.nft",
                 "/usr/share/acl.d/sipalg.json", "/usr/share/sipalg/capabilities.json"):
        assert path in listed and os.path.exists(path), path
    with open(info + "conffiles") as f:
        assert f.read().split() == ["/etc/config/sipalg"]
    assert os.readlink("/etc/rc.d/S95sipalg") == "../init.d/sipalg"          # postinst enabled it
    import pwd
    assert pwd.getpwnam("sipalg").pw_uid >= 32768                             # Require-User: sipalg:sipalg
    assert sh(INIT, "enabled", check=False).returncode == 0
    assert not os.path.exists("/etc/uci-defaults/90-sipalg")                  # ran at first boot
    # and so did 91-sipalg-bytecode: every module compiled for this python3, and loaded from there
    assert not os.path.exists("/etc/uci-defaults/91-sipalg-bytecode")
    lib, tag = "/usr/lib/sipalg", sys.implementation.cache_tag
    for d, _, files in os.walk(lib):
        for f in files:
            if f.endswith(".py"):
                assert os.path.exists(os.path.join(d, "__pycache__", "%s.%s.pyc" % (f[:-3], tag))), (d, f)
    r = sh("python3", "-I", "-v", "-c", "import sys; sys.path.insert(0, %r); import alg.daemon" % lib)
    assert re.search(r"^# code object from '?%s/alg/__pycache__/daemon\.%s\.pyc" % (lib, tag), r.stdout, re.M)
    assert sh("uci", "get", "firewall.sipalg.path").stdout.strip() == "/usr/share/sipalg/fw4-reload.sh"
    # shipped with enabled '0': started at boot, but no instance
    assert sh("uci", "get", "sipalg.main.enabled").stdout.strip() == "0"
    assert sh(INIT, "running", check=False).returncode != 0
    assert "sipalg" not in sh("nft", "list", "tables").stdout
    with open(INIT) as f:
        assert f.readline().strip() == "#!/bin/sh /etc/rc.common"


def need_vm():
    need(os.path.exists(VM_MARKER), "runs only inside the QEMU test VM (make qemu-test)")


# -- the acceptance scenarios, the lab's tests as they are

test_outbound_call_rewritten_and_audio_both_ways = _lab("test_calls", "test_outbound_call_rewritten_and_audio_both_ways")
test_two_phones_same_ports_both_get_audio = _lab("test_calls", "test_two_phones_same_ports_both_get_audio")
test_sigkill_fails_open_and_restart_picks_up = _lab("test_calls", "test_sigkill_fails_open_and_restart_picks_up")
test_incoming_calls_reach_the_right_phone_after_conntrack_timeout = _lab(
    "test_registration", "test_incoming_calls_reach_the_right_phone_after_conntrack_timeout")
test_bye_closes_pinholes_in_kernel = _lab("test_calls", "test_bye_closes_pinholes_in_kernel")

# The element writer on the guest's older kernel (Debian bookworm: 6.1, older than OpenWrt
# 24.10's 6.6; the host's is newer): batches without acks answer only failures, inside
# sendmsg, one element's failure affects only itself, a refresh is delete + add before 6.12,
# and the monitor's socket filter keeps element notifications out
test_nf_tables_one_bad_element_fails_alone = _lab("test_nf_tables_kernel", "test_one_bad_element_fails_alone")
test_nf_tables_a_good_batch_leaves_nothing_to_read = _lab(
    "test_nf_tables_kernel", "test_a_batch_that_goes_through_leaves_nothing_to_read")
test_nf_tables_refresh_on_this_kernel = _lab(
    "test_nf_tables_kernel", "test_refresh_uses_the_kernels_update_and_the_fallback_works_too")
test_nf_tables_monitor_not_woken_by_element_writes = _lab(
    "test_nf_tables_kernel", "test_our_own_element_writes_do_not_wake_the_monitor")


# -- what the VM adds

def test_queue_rule_is_the_nft_queue_statement(lab, alg):
    rules = alg.queue_rules()
    print("\n".join(rules))
    st = alg.status()
    assert st["queue"] == "nft" and st.get("queue_backend", "netlink") == "netlink"   # no C binding in the image
    assert re.search(r"^nft_queue\s", sh("lsmod").stdout, re.M)


def test_toggling_enabled_stops_and_restores_the_service(lab, alg):
    src, payload = options_through(lab, 1)
    assert b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in payload      # rewritten by the ALG
    pid = alg.pid
    # off: uci edit, then the init script's reload
    uci_set(enabled=0)
    assert sh("uci", "get", "sipalg.main.enabled").stdout.strip() == "0"
    sh(INIT, "reload")
    alg.wait_stopped()
    assert sh(INIT, "running", check=False).returncode != 0
    assert "sipalg" not in sh("nft", "list", "tables").stdout                  # its table went with it
    assert "NFQUEUE" not in sh("iptables-save").stdout
    assert sh("sipalg", "status", check=False).returncode == 1
    src, payload = options_through(lab, 2)                                              # plain NAT: left alone
    assert b"Via: SIP/2.0/UDP 10.0.0.2:5060;" in payload
    # on again: uci edit, then reload_config (what LuCI's apply does), through the reload trigger
    uci_set(enabled=1)
    sh("reload_config")
    alg.wait_running(old_pid=pid)
    alg.assert_nft_queue()
    time.sleep(0.5)
    src, payload = options_through(lab, 3)
    assert src == (ROUTER_WAN, 5060) and b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in payload
    # an unchanged `start` leaves the running instance alone (procd semantics)
    pid = alg.pid
    sh(INIT, "start")
    time.sleep(1)
    assert alg.proc.poll() is None and json.loads(sh("sipalg", "status", "--json").stdout)["pid"] == pid
    log = alg.log()
    assert "stopped; table sipalg and queue rules removed" in log, log[-2000:]
    assert re.search(r"via nft queue", log), log[-2000:]


DUMMY = """#!/bin/sh /etc/rc.common
USE_PROCD=1
START=99
start_service() {
	[ -e /tmp/vmdummy.on ] || return 0
	procd_open_instance main
	procd_set_param command /bin/sleep 1000
	procd_set_param respawn 3600 1 5
	procd_close_instance
}
"""


def _dummy_pid():
    inst = json.loads(sh("/usr/libexec/procd-shim", "list").stdout).get("vmdummy", {}).get("instances", {})
    return inst.get("main", {}).get("pid") if inst.get("main", {}).get("running") else None


def test_procd_emulation_keeps_procds_semantics():
    """What the init script relies on: start keeps an unchanged running instance, no instance stops it,
    a signal to a missing instance does nothing, a killed instance respawns."""
    need_vm()
    with open("/etc/init.d/vmdummy", "w") as f:
        f.write(DUMMY)
    os.chmod("/etc/init.d/vmdummy", 0o755)
    open("/tmp/vmdummy.on", "w").close()
    try:
        sh("/etc/init.d/vmdummy", "start")
        pid = _dummy_pid()
        assert pid
        sh("/etc/init.d/vmdummy", "start")
        assert _dummy_pid() == pid                                   # unchanged and running: left alone
        sh("sh", "-c", ". /lib/functions/procd.sh; procd_send_signal vmdummy nosuch HUP; "
                       "procd_send_signal nosuch main HUP")          # no-ops, no error
        assert _dummy_pid() == pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _dummy_pid() in (None, pid):
            assert time.monotonic() < deadline, "not respawned"
            time.sleep(0.2)
        os.unlink("/tmp/vmdummy.on")
        sh("/etc/init.d/vmdummy", "start")                           # declares no instance: stopped
        assert _dummy_pid() is None
        assert sh("/etc/init.d/vmdummy", "running", check=False).returncode != 0
    finally:
        sh("/etc/init.d/vmdummy", "stop", check=False)
        os.unlink("/etc/init.d/vmdummy")


# -- flow offloading: fw4 with `option flow_offloading '1'` over the lab's devices

FW4_INCLUDE = "/usr/share/sipalg/forward-pinholes.nft"      # as the package installed it


@pytest.fixture
def fw4_offload(lab):
    """fw4's ruleset as it renders software flow offloading (a flowtable over br0 and wan0, `flow offload
    @ft` first in forward, policy drop), with the package's forward_wan include."""
    lab.nft(lab.rtr, "add table inet fw4\ndelete table inet fw4\n"
            + fw4_ruleset(lab.lan_if, lab.wan_if, [FW4_INCLUDE], offload=True))
    yield
    sh("nft", "delete", "table", "inet", "fw4", check=False)


def _flows(**orig):
    ct = Conntrack()
    try:
        return ct.flows(orig=Match(**orig))
    finally:
        ct.close()


def _conntrack_list() -> str:
    return sh("conntrack", "-L", "-p", "udp", check=False).stdout


def _offloaded(seconds, **orig):
    """The entries whose original tuple matches, once one of them is in the flowtable (or at the deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        flows = _flows(**orig)
        if any(f.status & cthelper.IPS_OFFLOAD for f in flows) or time.monotonic() > deadline:
            return flows
        time.sleep(0.2)


def _assert_sip_kept_out(flows, table):
    """SIP entries: our helper attached (so nft_flow_offload_eval() skips them), never offloaded."""
    assert flows, table
    for f in flows:
        assert f.status & cthelper.IPS_HELPER and not f.status & cthelper.IPS_OFFLOAD, (f, table)
    listed = 0
    for line in table.splitlines():
        m = re.search(r"sport=(\d+) dport=(\d+)", line)          # the original tuple comes first
        if m and "5060" in m.groups():
            assert "helper=%s" % cthelper.NAME in line and "OFFLOAD]" not in line, table
            listed += 1
    assert listed >= len(flows), table


def _media_wan_port(alg, lan, seconds):
    """The WAN port of the media pinhole that DNATs to `lan`, once the SDP has opened it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, data in alg.kernel_table().get("media2lan", []):
            if data == {"concat": list(lan)}:
                return key["elem"]["val"] if isinstance(key, dict) else key
        time.sleep(0.2)
    raise AssertionError("no media pinhole to %s:%d" % lan)


def _requests(packets, method):
    return [p for p in packets if p[4].startswith(method + b" ")]


def test_offloading_outbound_call_sip_stays_with_the_alg_media_in_the_flowtable(lab, fw4_offload, alg, logdir):
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 10)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3 * SLOW)
    uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
               duration_ms=5000, name="uac").start()
    time.sleep(1.0 * SLOW)
    sender = rtp_send_bg(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 150)
    media = _offloaded(15, src=PHONES[0], sport=6000)
    table = _conntrack_list()
    print(table)
    assert media and all(f.status & cthelper.IPS_OFFLOAD for f in media), table      # media: the fast path
    _assert_sip_kept_out(_flows(src=PHONES[0], sport=5060), table)
    rtp = json.loads(sender.communicate(timeout=60)[0])
    assert uac.wait() == 0 and uas.wait() == 0
    assert rtp["received"] == 150 and echo.result() == {"%s:6000" % ROUTER_WAN: 150}
    # every request of the call, the ones after the flow was established too, was rewritten
    pk = wan.packets()
    for method in (b"INVITE", b"ACK", b"BYE"):
        sent = _requests(pk, method)
        assert sent and all(b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in p[4] for p in sent), method
    sip = b"".join(p[4] for p in pk if 5060 in (p[1], p[3]))
    assert PHONES[0].encode() not in re.sub(rb"Call-ID: [^\r]*", b"", sip)
    _assert_sip_kept_out(_flows(src=PHONES[0], sport=5060), _conntrack_list())


def test_offloading_incoming_call_after_conntrack_timeout(lab, fw4_offload, alg, logdir):
    lab.set_udp_timeouts(10, 15)
    Kamailio(lab, logdir).start()
    reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, name="reg",
               extra=["-key", "expires", "600"])
    reg.args[reg.args.index("-s") + 1] = "alice"
    assert reg.start().wait() == 0
    deadline = time.monotonic() + 40                        # silence: conntrack forgets the phone (15 s)
    while PHONES[0] in _conntrack_list() and time.monotonic() < deadline:
        time.sleep(1.0)
    assert PHONES[0] not in _conntrack_list()
    lan = Capture(lab, lab.ph1, "eth0", logdir + "/lan.pcap")
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    phone = Sipp(lab, lab.ph1, "uas.xml", PHONES[0], logdir, rtp=6000, name="uas-alice")
    phone.args[phone.args.index("-s") + 1] = "alice"
    phone.start()
    time.sleep(0.5 * SLOW)
    caller = Sipp(lab, lab.wan, "uac.xml", SERVER, logdir, remote="%s:5060" % SERVER, port=5070, rtp=25070,
                  duration_ms=6000, name="caller")
    caller.args[caller.args.index("-s") + 1] = "alice"
    caller.start()
    # the far end's audio comes in through the pinhole the phone's answer opened, and is answered
    port = _media_wan_port(alg, (PHONES[0], 6000), 20 * SLOW)
    echo = RtpEcho(lab, lab.ph1, PHONES[0], 6000, 6)
    rtp = rtp_send(lab, lab.wan, (SERVER, 25070), (ROUTER_WAN, port), 100)
    media = _offloaded(10, src=SERVER, sport=25070, dport=port)
    table = _conntrack_list()
    print(table)
    assert rtp["received"] == 100 and echo.result() == {"%s:25070" % SERVER: 100}
    assert media and all(f.status & cthelper.IPS_OFFLOAD and f.status & cthelper.IPS_DST_NAT for f in media), table
    _assert_sip_kept_out(_flows(src=SERVER, sport=5060, dst=ROUTER_WAN), table)
    assert caller.wait() == 0 and phone.wait() == 0
    # the in-dialog requests reached the phone mapped back to it: the ALG still saw them
    got = lan.packets()
    for method in (b"INVITE", b"ACK", b"BYE"):
        reqs = _requests(got, method)
        assert reqs, method
        for p in reqs:
            line = p[4].split(b"\r\n", 1)[0]
            assert PHONES[0].encode() in line and ROUTER_WAN.encode() not in line, line
    answer = [p for p in wan.packets() if p[4].startswith(b"SIP/2.0 200") and b"INVITE" in p[4]]
    assert answer and all(PHONES[0].encode() not in p[4] for p in answer)


def test_offload_helper_accepts_everything_and_goes_with_the_service(lab, alg):
    helpers = cthelper.UserspaceHelpers()
    try:
        h = helpers.get(cthelper.NAME)
        # registered "not configured": nfnl_userspace_cthelper() accepts every packet, queues none
        assert h == cthelper.Helper(cthelper.NAME, cthelper.NFPROTO_IPV4, cthelper.IPPROTO_UDP, 0,
                                    cthelper.NFCT_HELPER_STATUS_DISABLED, 0), h
        # attached, after the queue's verdict, to what the queue rules take
        table = sh("nft", "list", "table", "ip", alg.table).stdout
        attach = [l.strip() for l in table.splitlines() if 'ct helper set "%s"' % cthelper.NAME in l]
        queued = [re.sub(r" counter packets \d+ bytes \d+ queue .*", "", r) for r in alg.queue_rules()]
        assert sorted(l.replace(' ct helper set "%s"' % cthelper.NAME, "") for l in attach) == sorted(queued), table
        alg.disable()
        assert helpers.get(cthelper.NAME) is None                # the table went first, then the helper
        assert "sipalg" not in sh("nft", "list", "tables").stdout
    finally:
        helpers.close()



# -- fw4 by the book: the firewall config as the init script keeps it, rendered by the VM's fw4 stand-in
# (qemu/guest/overlay/sbin/fw4, tests/support/fw4.py render()), which reloads and runs the script include

NETWORK = "config interface 'lan'\n\toption device '%s'\n\nconfig interface 'uplink'\n\toption device '%s'\n"
FIREWALL = """config defaults
	option input 'DROP'
	option output 'ACCEPT'
	option forward 'DROP'

config zone
	option name 'lan'
	list network 'lan'
	option input 'ACCEPT'
	option output 'ACCEPT'
	option forward 'ACCEPT'

config zone
	option name 'internet'
	list network 'uplink'
	option input 'DROP'
	option output 'ACCEPT'
	option forward 'DROP'
	option masq '1'

config forwarding
	option src 'lan'
	option dest 'internet'
"""


@pytest.fixture
def fw4_uci(lab):
    """A router whose WAN zone is called `internet`, its firewall up (fw4 start); put back after."""
    saved = {}
    for name in ("firewall", "network"):
        path = "/etc/config/" + name
        saved[path] = open(path).read() if os.path.exists(path) else None
    with open("/etc/config/network", "w") as f:
        f.write(NETWORK % (lab.lan_if, lab.wan_if))
    with open("/etc/config/firewall", "w") as f:
        f.write(FIREWALL)
    sh("fw4", "start")
    yield
    sh("fw4", "stop", check=False)
    for path, text in saved.items():
        if text is None:
            os.unlink(path)
        else:
            with open(path, "w") as f:
                f.write(text)


def _chain(name):
    return sh("nft", "list", "chain", "inet", "fw4", name, check=False).stdout


def test_fw4_include_follows_a_wan_zone_named_otherwise(lab, fw4_uci, alg):
    # enabling ran `sipalg firewall sync`: an include for the zone wan0 is in, and fw4 reloaded
    assert sh("uci", "get", "firewall.sipalg_fwd_internet.chain").stdout.strip() == "forward_internet"
    assert sh("uci", "get", "firewall.sipalg_fwd_internet.position").stdout.strip() == "chain-prepend"
    assert "!sipalg" in _chain("forward_internet").splitlines()[2], _chain("forward_internet")   # first in it
    assert "forward_wan" not in sh("nft", "list", "table", "inet", "fw4").stdout
    # and it works: media DNAT'd to the phone passes forward_internet (policy drop), nothing else does
    offer, reaches = _lab("test_fw4", "_offer"), _lab("test_fw4", "_rtp_reaches_phone")
    port = offer(lab, b"vm-zone-1")
    got = reaches(lab, port)
    assert got is not None and got[0] == (SERVER, 20000)
    assert reaches(lab, 7777 if port != 7777 else 7779) is None
    # after each fw4 reload its script include tells the running daemon (a HUP)
    sh("fw4", "reload")
    deadline = time.monotonic() + 20 * SLOW
    while "config reloaded" not in alg.log():
        assert time.monotonic() < deadline, alg.log()[-3000:]
        time.sleep(0.2)
    assert "!sipalg" in _chain("forward_internet")


def _zone_lan():
    return sorted(l for l in sh("uci", "show", "firewall.@zone[0]").stdout.splitlines())


def test_kernel_sip_helper_off_while_enabled_and_restored(lab, fw4_uci):
    sh("modprobe", "-a", "nf_conntrack_sip", "nf_conntrack_ftp")
    sh("fw4", "reload")                                      # fw4 now counts them available
    assert 'ct helper set "sip"' in _chain("helper_lan") and 'ct helper set "ftp"' in _chain("helper_lan")
    before = _zone_lan()
    a = ServiceAlg(lab).enable()                             # the shipped disable_kernel_helper '1'
    try:
        helper_lan = _chain("helper_lan")
        assert 'ct helper set "ftp"' in helper_lan and "sip" not in helper_lan, helper_lan
        assert sh("uci", "get", "firewall.@zone[0].auto_helper").stdout.strip() == "0"
        st = a.status()
        assert st["kernel_helper"] == {"present": True, "builtin": False, "attached": []}, st["kernel_helper"]
    finally:
        a.disable()                                          # enabled '0': the zone as it was, fw4 reloaded
    assert _zone_lan() == before
    assert 'ct helper set "sip"' in _chain("helper_lan")
    assert "sipalg_helper" not in sh("uci", "show", "firewall").stdout


def test_the_daemon_runs_without_full_root_and_logs_each_line_once(lab, alg):
    from alg import privileges
    import pwd
    st = privileges.status(str(alg.pid))
    uid = str(pwd.getpwnam("sipalg").pw_uid)
    assert st["Uid"].split() == [uid] * 4, st
    for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert st[k] == "%016x" % privileges.mask(privileges.KEEP), (k, st)
    src, payload = options_through(lab, "vm-priv-1")
    assert b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in payload
    # every table gone: put back by the unprivileged daemon (nft -f with its ambient capabilities)
    sh("nft", "flush", "ruleset")
    deadline = time.monotonic() + 10
    while "sipalg" not in sh("nft", "list", "tables").stdout:
        assert time.monotonic() < deadline, alg.log()[-3000:]
        time.sleep(0.2)
    alg.assert_nft_queue()
    time.sleep(0.5 * SLOW)
    src, payload = options_through(lab, "vm-priv-2")
    assert b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in payload
    # a reload procd's way: the config changed, so procd sends reload_signal (HUP), and the unprivileged
    # daemon re-reads the copy the init script made of /etc/config/sipalg (root's, 0600)
    pid = alg.pid
    uci_set(limit_calls=999)
    sh(INIT, "reload")
    deadline = time.monotonic() + 20 * SLOW
    while "config reloaded: sipalg.main.limit_calls" not in alg.log():
        assert time.monotonic() < deadline, alg.log()[-3000:]
        time.sleep(0.2)
    assert json.loads(sh("sipalg", "status", "--json").stdout)["pid"] == pid          # not restarted
    # logread: each line once, from syslog with its priority; procd's capture holds none of them
    mine = [l for l in sh("logread").stdout.splitlines() if "sipalg[%d]:" % alg.pid in l]
    assert len([l for l in mine if ": running: wan" in l]) == 1, mine
    assert len([l for l in mine if "privileges: now user sipalg" in l]) == 1, mine
    assert len([l for l in mine if "was removed from the kernel: re-installed" in l]) == 1, mine
    assert any("daemon.info" in l for l in mine) and any("daemon.warn" in l for l in mine), mine
    with open("/var/log/sipalg.log", errors="replace") as f:
        assert "running: wan" not in f.read()


def test_a_second_lan_interface_and_an_excluded_host_by_uci(lab):
    """list lan_if with a VoIP VLAN beside br0, list exclude for a host: set with uci, the service's way."""
    ph3 = _lab("test_lans", "_voip_vlan")(lab)
    through, voip_phone = _lab("test_lans", "_through"), _lab("test_lans", "VOIP_PHONE")
    for opt in ("lan_if", "exclude"):                                   # as scripts do: -q, absent is fine
        subprocess.run(["uci", "-q", "delete", "sipalg.main." + opt], check=False)
    script = ("set sipalg.main.wan_if=%s\nadd_list sipalg.main.lan_if=%s\n"
              "add_list sipalg.main.lan_if=voip0\nadd_list sipalg.main.exclude=%s\n"
              "set sipalg.main.log_level=debug\nset sipalg.main.enabled=1\ncommit sipalg\n"
              % (lab.wan_if, lab.lan_if, PHONES[1]))
    subprocess.run(["uci", "batch"], input=script, text=True, check=True)
    a = ServiceAlg(lab)
    sh(INIT, "reload")
    a.wait_running()
    try:
        alg_rules = sh("nft", "list", "table", "ip", "sipalg").stdout
        assert '{ "br0", "voip0" }' in alg_rules, alg_rules
        for ns, ip, n in ((lab.ph1, PHONES[0], "vm-a"), (ph3, voip_phone, "vm-b")):
            sent, got = through(lab, ns, ip, n)
            assert got is not None and b"Via: SIP/2.0/UDP %s:" % ROUTER_WAN.encode() in got[1], (ip, a.log()[-2000:])
        sent, got = through(lab, lab.ph2, PHONES[1], "vm-c")          # the excluded host: as it came
        assert got is not None and got[1] == sent
        time.sleep(1.5 * SLOW)                                          # the status written since
        st = a.status()
        assert st["counters"]["excluded"] == 1, st["counters"]
        assert sorted(b["lan"] for b in st["bindings"]) == ["10.0.0.2:5060", "10.0.9.2:5060"]
    finally:
        a.disable()
        for opt in ("lan_if", "exclude"):
            subprocess.run(["uci", "-q", "delete", "sipalg.main." + opt], check=False)
        subprocess.run(["uci", "batch"], input="set sipalg.main.lan_if=%s\ncommit sipalg\n" % lab.lan_if,
                       text=True, check=True)
