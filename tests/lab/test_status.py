"""The daemon's status file in the lab: written only when something changed, and a state directory
that can't be written (full, read-only) is a warning, never the end of the daemon or its bindings."""
import json
import os
import subprocess
import time

from tests.support.lab.netns import PHONES, SERVER
from tests.support.lab.peers import Alg, Kamailio, RtpEcho, Sipp, rtp_send


def _sipp(lab, ns, scenario, ip, logdir, name, user, **kw):
    s = Sipp(lab, ns, scenario, ip, logdir, name=name, **kw)
    s.args[s.args.index("-s") + 1] = user
    return s


def _register(lab, logdir, ns, ip, user):
    reg = _sipp(lab, ns, "register.xml", ip, logdir, "reg-" + user, user, remote="%s:5060" % SERVER,
                extra=["-key", "expires", "600"])
    assert reg.start().wait() == 0, user


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_written_only_on_change(lab, alg, logdir):
    """A registered phone and no traffic: the file stays as it is (no expires_in ticking down);
    the next registration is in it within a second."""
    path = os.path.join(alg.state_dir, "status.json")
    Kamailio(lab, logdir).start()
    _register(lab, logdir, lab.ph1, PHONES[0], "alice")
    time.sleep(1.0)
    before = os.stat(path).st_mtime_ns, open(path).read()
    assert [r["lan"] for r in _read(path)["registrations"]] == ["%s:5060" % PHONES[0]]
    time.sleep(6)
    assert (os.stat(path).st_mtime_ns, open(path).read()) == before, "rewritten with nothing changed"

    _register(lab, logdir, lab.ph2, PHONES[1], "bob")
    registered = time.monotonic()
    while time.monotonic() - registered < 1.0 and len(_read(path)["registrations"]) < 2:
        time.sleep(0.02)
    took = time.monotonic() - registered
    st = _read(path)
    assert st["totals"]["registrations"] == 2 and len(st["registrations"]) == 2, "not published within 1 s"
    print("second registration published %.0f ms after its 200 OK reached the phone" % (took * 1000))


def _mount_tmpfs(path, size="64k"):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "hs-tmpfs", path], check=True)


def _fill(path):
    """Fill the file system under path to the last block; the filler's path."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_or_read_only_state_dir_is_a_warning_and_writing_resumes(lab, logdir):
    """The state dir a 64 KiB tmpfs: filled up while a phone registers and calls, the daemon warns
    once, keeps running and rewriting SIP, keeps its bindings; with space back the file is current
    again within RETRY s.  Then the same with the file system read-only."""
    state = os.path.join(logdir, "state")
    _mount_tmpfs(state)
    alg = None
    try:
        alg = Alg(lab, logdir, "--rtp-ports", "1024-65535").start()
        path = os.path.join(state, "status.json")
        Kamailio(lab, logdir).start()
        old = open(path).read()
        filler = _fill(state)

        # a registration and a call while nothing can be written
        _register(lab, logdir, lab.ph1, PHONES[0], "alice")
        echo = RtpEcho(lab, lab.wan, SERVER, 20000, 4)
        uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, port=5080, rtp=20000, name="uas").start()
        time.sleep(0.3)
        uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5080" % SERVER, rtp=6000,
                   duration_ms=2000, name="uac").start()
        time.sleep(0.8)
        rtp = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 40)
        assert uac.wait() == 0 and uas.wait() == 0
        assert rtp["received"] == 40 and sum(echo.result().values()) == 40
        time.sleep(1.0)
        assert alg.proc.poll() is None, "the daemon exited:\n" + alg.log()[-3000:]
        assert PHONES[0] in json.dumps(alg.kernel_table()["lan2wan"])          # the binding is still held
        assert open(path).read() == old                                        # the last whole file stays
        assert not os.path.exists(path + ".tmp")                               # no partial file holds space
        warnings = [ln for ln in alg.log().splitlines() if "status not written to %s" % path in ln]
        assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings

        # space again: within RETRY (5 s) the file shows the registration
        os.unlink(filler)
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline and not _read(path)["registrations"]:
            time.sleep(0.2)
        st = _read(path)
        assert [r["lan"] for r in st["registrations"]] == ["%s:5060" % PHONES[0]], st
        assert "status written to %s again" % path in alg.log()

        # read-only: the same, EROFS
        subprocess.run(["mount", "-o", "remount,ro", state], check=True)
        _register(lab, logdir, lab.ph2, PHONES[1], "bob")
        time.sleep(1.5)
        assert alg.proc.poll() is None
        assert len(_read(path)["registrations"]) == 1
        assert "Read-only file system" in alg.log()
        subprocess.run(["mount", "-o", "remount,rw", state], check=True)
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline and len(_read(path)["registrations"]) < 2:
            time.sleep(0.2)
        assert len(_read(path)["registrations"]) == 2
        assert alg.stop() == 0
    finally:
        if alg is not None and alg.proc is not None:
            alg.stop()
        subprocess.run(["umount", "-l", state], check=False)
