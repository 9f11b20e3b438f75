"""Status LEDs against a fake /sys/class/leds: probing, take-over and give-back, state from a real Engine."""
import logging
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "core"))

from alg import daemon, options, uci  # noqa: E402
from alg.core.config import Config  # noqa: E402
from alg.core.engine import Engine, IN, OUT  # noqa: E402
from alg.leds import (BLINK, ERROR_HOLD, OFF, ON, RINGING_BLINK, Led, LedConfig, LedState,  # noqa: E402
                      StatusLeds, engine_state, parse_trigger, probe)
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, crlf, header_line, invite, register, response, sdp  # noqa: E402
from tests.support.lab.netns import Lab, PHONES, SERVER as LAB_SERVER  # noqa: E402
from tests.support.lab.peers import Alg, received, recv_udp, send_udp  # noqa: E402
from tests.support.need import require_lab  # noqa: E402

PI_TRIGGERS = "none rc-feedback kbd-scrolllock timer oneshot heartbeat default-on mmc0 actpwr input"
SHIPPED_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "openwrt", "sipalg", "files", "sipalg.config")


def make_led(root, name, active="mmc0", brightness=0, max_brightness=255, triggers=PI_TRIGGERS):
    """One LED directory as sysfs shows it: the active trigger in brackets."""
    d = root / name
    d.mkdir(parents=True)
    words = ["[%s]" % w if w == active else w for w in triggers.split()]
    (d / "trigger").write_text(" ".join(words) + "\n")
    (d / "brightness").write_text("%d\n" % brightness)
    (d / "max_brightness").write_text("%d\n" % max_brightness)
    return d


def read(d, attr):
    return (d / attr).read_text().strip()


def leds_for(root, **names):
    s = StatusLeds(LedConfig(enabled=True, root=str(root), **names))
    s.start()
    return s


# ---------------------------------------------------------------- probing

def test_parse_trigger_finds_the_bracketed_one():
    assert parse_trigger("none [mmc0] timer") == ("mmc0", ["none", "mmc0", "timer"])
    assert parse_trigger("[none] timer\n") == ("none", ["none", "timer"])
    assert parse_trigger("none timer") == (None, ["none", "timer"])


def test_auto_on_new_pi_kernel_takes_act_and_pwr(tmp_path):
    for n in ("ACT", "PWR", "mmc0::"):
        make_led(tmp_path, n)
    got = probe(str(tmp_path), {"registered": "auto", "call": "auto", "error": "auto"})
    assert got == {"registered": "ACT", "error": "PWR"}


def test_auto_on_old_pi_kernel_takes_led0_and_led1(tmp_path):
    for n in ("led0", "led1"):
        make_led(tmp_path, n)
    got = probe(str(tmp_path), {"registered": "auto", "call": "", "error": "auto"})
    assert got == {"registered": "led0", "error": "led1"}


def test_new_names_win_over_old_ones(tmp_path):
    for n in ("led0", "ACT", "led1", "PWR"):
        make_led(tmp_path, n)
    assert probe(str(tmp_path), {"registered": "auto", "error": "auto"}) == {"registered": "ACT", "error": "PWR"}


def test_pi_zero_has_no_error_led(tmp_path):
    make_led(tmp_path, "ACT")
    assert probe(str(tmp_path), {"registered": "auto", "call": "auto", "error": "auto"}) == {"registered": "ACT"}


def test_generic_names_take_telephony_leds_never_port_leds(tmp_path):
    for n in ("soc:green:lan", "soc:green:wlan", "green:usb", "soc:green:voip", "soc:green:phone1",
              "soc:red:status", "soc:green:status"):
        make_led(tmp_path, n)
    got = probe(str(tmp_path), {"registered": "auto", "call": "auto", "error": "auto"})
    assert got == {"registered": "soc:green:voip", "call": "soc:green:phone1", "error": "soc:red:status"}


def test_only_port_leds_gives_nothing(tmp_path):
    for n in ("green:lan", "green:wan", "amber:wan"):
        make_led(tmp_path, n)
    assert probe(str(tmp_path), {"registered": "auto", "call": "auto", "error": "auto"}) == {}


def test_explicit_names_are_claimed_before_auto(tmp_path):
    for n in ("ACT", "PWR", "led0"):
        make_led(tmp_path, n)
    # error takes ACT by name: registered falls to the next Pi name, not the claimed one
    got = probe(str(tmp_path), {"registered": "auto", "error": "ACT", "call": "PWR"})
    assert got == {"registered": "led0", "error": "ACT", "call": "PWR"}


def test_probe_without_the_directory_is_empty(tmp_path):
    assert probe(str(tmp_path / "nope"), {"registered": "auto"}) == {}


# ---------------------------------------------------------------- take over, show, give back

def test_take_over_and_restore_a_triggered_led(tmp_path):
    act = make_led(tmp_path, "ACT", active="mmc0", brightness=255)
    s = leds_for(tmp_path, registered="ACT")
    assert read(act, "trigger") == "none" and read(act, "brightness") == "0"
    s.show(LedState(registered=ON))
    assert read(act, "brightness") == "255"
    s.show(LedState(registered=OFF))
    assert read(act, "brightness") == "0"
    s.stop()
    assert read(act, "trigger") == "mmc0"
    assert s.leds == {}


def test_restore_brightness_of_an_led_without_trigger(tmp_path):
    pwr = make_led(tmp_path, "PWR", active="none", brightness=1, max_brightness=1)
    s = leds_for(tmp_path, error="PWR")
    s.show(LedState(error=OFF))
    assert read(pwr, "brightness") == "0"
    s.show(LedState(error=ON))
    assert read(pwr, "brightness") == "1"        # max_brightness, not a fixed 255
    s.show(LedState(error=OFF))
    s.stop()
    assert read(pwr, "trigger") == "none" and read(pwr, "brightness") == "1"


def test_writes_only_on_change(tmp_path):
    act = make_led(tmp_path, "ACT")
    s = leds_for(tmp_path, registered="ACT")
    s.show(LedState(registered=ON))
    (act / "brightness").write_text("sentinel\n")     # a second write would overwrite this
    s.show(LedState(registered=ON))
    assert read(act, "brightness") == "sentinel"
    s.show(LedState(registered=OFF))
    assert read(act, "brightness") == "0"


def test_ringing_blinks_with_the_timer_trigger_then_goes_steady(tmp_path):
    led = make_led(tmp_path, "green:phone", active="none")
    s = leds_for(tmp_path, call="green:phone")
    s.show(LedState(call=BLINK))
    assert read(led, "trigger") == "timer"
    assert (read(led, "delay_on"), read(led, "delay_off")) == tuple(str(x) for x in RINGING_BLINK)
    s.show(LedState(call=ON))
    assert read(led, "trigger") == "none" and read(led, "brightness") == "255"
    s.stop()
    assert read(led, "trigger") == "none" and read(led, "brightness") == "0"


def test_ringing_is_steady_without_a_timer_trigger(tmp_path):
    led = make_led(tmp_path, "green:phone", active="none", triggers="none default-on")
    s = leds_for(tmp_path, call="green:phone")
    s.show(LedState(call=BLINK))
    assert read(led, "trigger") == "none" and read(led, "brightness") == "255"
    assert not (led / "delay_on").exists()


def test_timer_trigger_and_its_delays_are_given_back(tmp_path):
    led = make_led(tmp_path, "ACT", active="timer")
    (led / "delay_on").write_text("100\n")
    (led / "delay_off").write_text("900\n")
    s = leds_for(tmp_path, registered="ACT")
    s.show(LedState(registered=ON))
    s.stop()
    assert read(led, "trigger") == "timer"
    assert (read(led, "delay_on"), read(led, "delay_off")) == ("100", "900")


# ---------------------------------------------------------------- state from a real engine

def _engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))


VIA_REG = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1"
VIA_INV = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
BYE = crlf("BYE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbye\n"
           "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
           "Call-ID: call1@10.0.0.2\nCSeq: 2 BYE\nContent-Length: 0\n\n")


def _registered(e, expires=600):
    e.handle(OUT, PHONE, SERVER, register(expires=expires), 0.0)
    ok = response(200, "OK", VIA_REG, "reg1@10.0.0.2", 1, "REGISTER",
                  contact="<sip:alice@203.0.113.1:5060>;expires=%d" % expires)
    e.handle(IN, SERVER, WAN, ok, 0.1)


def test_engine_state_follows_register_and_a_call():
    e = _engine()
    assert engine_state(e, 0.0) == (OFF, OFF)
    e.handle(OUT, PHONE, SERVER, register(expires=600), 0.0)
    assert engine_state(e, 0.0) == (OFF, OFF)            # asked, not yet granted
    _registered(e)
    assert engine_state(e, 1.0) == (ON, OFF)
    e.handle(OUT, PHONE, SERVER, invite(), 2.0)
    assert engine_state(e, 2.0) == (ON, BLINK)
    e.handle(IN, SERVER, WAN, response(180, "Ringing", VIA_INV, "call1@10.0.0.2", 1, "INVITE"), 2.5)
    assert engine_state(e, 2.5) == (ON, BLINK)
    ok = response(200, "OK", VIA_INV, "call1@10.0.0.2", 1, "INVITE", body=sdp(ip="203.0.113.10", port=20000),
                  contact="<sip:bob@203.0.113.10>")
    e.handle(IN, SERVER, WAN, ok, 3.0)
    assert engine_state(e, 3.0) == (ON, ON)
    e.handle(OUT, PHONE, SERVER, BYE, 60.0)
    assert engine_state(e, 60.0) == (ON, OFF)


def test_registration_expiry_turns_registered_off():
    e = _engine()
    _registered(e, expires=600)
    assert engine_state(e, 100.0)[0] == ON
    e.expire(10000.0)
    assert not e.registrations and engine_state(e, 10000.0)[0] == OFF


def test_failed_register_is_not_registered():
    e = _engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)
    e.handle(IN, SERVER, WAN, response(403, "Forbidden", VIA_REG, "reg1@10.0.0.2", 1, "REGISTER"), 0.1)
    assert engine_state(e, 1.0) == (OFF, OFF)


def test_update_drives_the_sysfs_files_from_the_engine(tmp_path):
    act, pwr, phone = (make_led(tmp_path, n) for n in ("ACT", "PWR", "green:phone"))
    s = leds_for(tmp_path, registered="auto", error="auto", call="auto")
    assert s.describe() == {"registered": "ACT", "error": "PWR", "call": "green:phone"}
    e = _engine()
    s.update(e, WAN_IP, 0, 0.0)
    assert [read(d, "brightness") for d in (act, phone, pwr)] == ["0", "0", "0"]
    _registered(e)
    s.update(e, WAN_IP, 0, 1.0)
    assert [read(d, "brightness") for d in (act, phone, pwr)] == ["255", "0", "0"]
    e.handle(OUT, PHONE, SERVER, invite(), 2.0)
    s.update(e, WAN_IP, 0, 2.0)
    assert read(phone, "trigger") == "timer"
    s.update(e, None, 0, 3.0)                           # WAN lost its address
    assert read(pwr, "brightness") == "255"
    s.stop()
    assert [read(d, "trigger") for d in (act, pwr, phone)] == ["mmc0", "mmc0", "mmc0"]


def test_error_while_nft_failures_rise():
    s = StatusLeds()
    assert s.error_state(WAN_IP, 0, 0.0) == OFF
    assert s.error_state(WAN_IP, 0, 1.0) == OFF
    assert s.error_state(WAN_IP, 3, 2.0) == ON
    assert s.error_state(WAN_IP, 3, 2.0 + ERROR_HOLD - 1) == ON
    assert s.error_state(WAN_IP, 3, 2.0 + ERROR_HOLD + 1) == OFF
    assert s.error_state(None, 3, 200.0) == ON


def test_failures_counted_before_start_are_not_an_error():
    s = StatusLeds()
    assert s.error_state(WAN_IP, 7, 0.0) == OFF


# ---------------------------------------------------------------- missing things

def test_disabled_touches_nothing(tmp_path):
    act = make_led(tmp_path, "ACT")
    s = StatusLeds(LedConfig(enabled=False, registered="ACT", root=str(tmp_path)))
    s.start()
    s.update(_engine(), None, 0, 0.0)
    s.stop()
    assert read(act, "trigger").startswith("none rc-feedback") and "[mmc0]" in read(act, "trigger")


def test_missing_directory_logs_once_and_does_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sipalg.leds")
    s = StatusLeds(LedConfig(enabled=True, registered="auto", root=str(tmp_path / "leds")))
    s.start()
    s.start()
    s.update(_engine(), None, 0, 0.0)
    s.stop()
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and str(tmp_path / "leds") in msgs[0]


def test_missing_led_is_named_and_the_others_work(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sipalg.leds")
    act = make_led(tmp_path, "ACT")
    s = leds_for(tmp_path, registered="ACT", error="gpio-red")
    assert s.describe() == {"registered": "ACT"}
    assert any("'gpio-red'" in r.getMessage() and "error" in r.getMessage() for r in caplog.records)
    s.show(LedState(registered=ON, error=ON))
    assert read(act, "brightness") == "255"


def test_led_without_max_brightness_is_skipped(tmp_path, caplog):
    d = make_led(tmp_path, "ACT")
    (d / "max_brightness").unlink()
    s = leds_for(tmp_path, registered="ACT")
    assert s.leds == {}
    assert "ACT" in caplog.text


def test_led_vanishing_at_run_time_is_dropped(tmp_path, caplog):
    make_led(tmp_path, "ACT")
    pwr = make_led(tmp_path, "PWR")
    s = leds_for(tmp_path, registered="ACT", error="PWR")
    shutil.rmtree(tmp_path / "ACT")
    s.show(LedState(registered=ON, error=ON))
    s.show(LedState(registered=OFF, error=OFF))
    assert s.describe() == {"error": "PWR"} and read(pwr, "brightness") == "0"
    assert caplog.text.count("ACT (registered) dropped") == 1
    s.stop()                                            # gives back what is left, no exception
    assert read(pwr, "trigger") == "mmc0"


def test_auto_finding_nothing_is_logged_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sipalg.leds")
    make_led(tmp_path, "ACT")
    s = leds_for(tmp_path, registered="auto", call="auto")
    assert s.describe() == {"registered": "ACT"}
    assert caplog.text.count("no LED found for call") == 1


def test_led_class_reads_max_brightness(tmp_path):
    make_led(tmp_path, "x:red:status", max_brightness=7)
    assert Led(str(tmp_path), "x:red:status").max == 7


# ---------------------------------------------------------------- configuration

def _config(tmp_path, leds_body, main="\toption wan_if 'wan'\n\toption lan_if 'lan'\n"):
    p = tmp_path / "sipalg"
    p.write_text("config sipalg 'main'\n" + main + "\nconfig leds 'leds'\n" + leds_body)
    return str(p)


def test_shipped_config_has_leds_off():
    cfg = LedConfig.from_section(uci.section(uci.load(SHIPPED_CONFIG), "leds", "leds"))
    assert cfg.enabled is False and cfg.names == {"registered": "", "call": "", "error": ""}


def test_from_section_reads_names_and_root(tmp_path):
    path = _config(tmp_path, "\toption enabled '1'\n\toption registered 'auto'\n\toption error 'PWR'\n"
                             "\toption sysfs_root '/tmp/fake'\n")
    cfg = LedConfig.from_section(uci.section(uci.load(path), "leds", "leds"))
    assert cfg.enabled and cfg.names == {"registered": "auto", "call": "", "error": "PWR"}
    assert cfg.root == "/tmp/fake"


def test_no_leds_section_means_off():
    assert LedConfig.from_section(None).enabled is False


@pytest.mark.parametrize("body, needle", [
    ("\toption registered 'leds/ACT'\n", "'leds/ACT'"),
    ("\toption error '..'\n", "'..'"),
    ("\toption registered 'ACT'\n\toption error 'ACT'\n", "'ACT' given for both registered and error"),
    ("\toption enabled 'maybe'\n", "'maybe'"),
    ("\tlist call 'a'\n\tlist call 'b'\n", "leds.call"),
])
def test_bad_names_are_refused_naming_them(tmp_path, body, needle):
    path = _config(tmp_path, body)
    with pytest.raises(ValueError) as ei:
        LedConfig.from_section(uci.section(uci.load(path), "leds", "leds"))
    assert needle in str(ei.value)


def _settings(path):
    import argparse
    p = argparse.ArgumentParser()
    daemon.add_arguments(p)
    args = p.parse_args(["--config", path])
    return LedConfig.from_settings(options.read(daemon.config_path(args), daemon.flags_of(args)))


def test_daemon_settings_read_the_leds_section(tmp_path):
    path = _config(tmp_path, "\toption enabled '1'\n\toption registered 'ACT'\n\toption call 'green:phone'\n")
    leds = _settings(path)
    assert leds.enabled and leds.names == {"registered": "ACT", "call": "green:phone", "error": ""}


def test_daemon_settings_refuse_a_bad_led(tmp_path):
    path = _config(tmp_path, "\toption enabled '1'\n\toption error '../PWR'\n")
    with pytest.raises(ValueError, match="leds.error"):
        _settings(path)


def test_reconfigure_keeps_or_swaps(tmp_path):
    act = make_led(tmp_path, "ACT")
    pwr = make_led(tmp_path, "PWR")
    s = leds_for(tmp_path, registered="ACT")
    same = s.reconfigure(LedConfig(enabled=True, registered="ACT", root=str(tmp_path)))
    assert same is s
    other = s.reconfigure(LedConfig(enabled=True, registered="PWR", root=str(tmp_path)))
    assert other is not s and other.describe() == {"registered": "PWR"}
    assert read(act, "trigger") == "mmc0" and read(pwr, "trigger") == "none"
    off = other.reconfigure(LedConfig(enabled=False))
    assert off.describe() == {} and read(pwr, "trigger") == "mmc0"


# ---------------------------------------------------------------- the daemon, end to end (lab: root, netns)

def _wait_for(pred, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_daemon_takes_over_shows_registration_and_gives_back(tmp_path):
    require_lab()
    root = tmp_path / "leds"
    act = make_led(root, "ACT", active="mmc0")
    pwr = make_led(root, "PWR", active="default-on", brightness=255)
    cfg = tmp_path / "sipalg.conf"
    cfg.write_text("config sipalg 'main'\n\toption disable_kernel_helper '0'\n\n"
                   "config leds 'leds'\n\toption enabled '1'\n\toption registered 'auto'\n"
                   "\toption error 'auto'\n\toption call ''\n\toption sysfs_root '%s'\n" % root)
    with Lab(tag="leds") as lab:
        alg = Alg(lab, str(tmp_path), "--config", str(cfg)).start()
        try:
            assert _wait_for(lambda: read(act, "trigger") == "none" and read(pwr, "trigger") == "none"), alg.log()
            assert read(act, "brightness") == "0" and read(pwr, "brightness") == "0"    # WAN has its address
            rx = recv_udp(lab, lab.wan, (LAB_SERVER, 5060))
            send_udp(lab, lab.ph1, (PHONES[0], 5060), (LAB_SERVER, 5060), register(ip=PHONES[0], expires=600))
            (ip, port), req = received(rx)
            via = header_line(req, b"Via:")[5:].decode().replace(";rport", ";rport=%d;received=%s" % (port, ip))
            contact = header_line(req, b"Contact:")[9:].decode() + ";expires=600"
            ok = response(200, "OK", via, "reg1@%s" % PHONES[0], 1, "REGISTER", contact=contact)
            send_udp(lab, lab.wan, (LAB_SERVER, 5060), (ip, port), ok)
            assert _wait_for(lambda: read(act, "brightness") == "255"), alg.log()
            assert read(pwr, "brightness") == "0"
        finally:
            assert alg.stop() == 0
    assert read(act, "trigger") == "mmc0" and read(pwr, "trigger") == "default-on"
    assert "status LEDs: registered on ACT" in alg.log()


# ---------------------------------------------------------------- hw/: the overlay's labels and the probe agree

OVERLAY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hw", "sipalg-leds-overlay.dts")


def _overlay_labels():
    import re
    with open(OVERLAY) as f:
        return re.findall(r'^\s*label = "([^"]+)";', f.read(), re.M)


def test_overlay_leds_with_pi_leds_auto_and_named(tmp_path):
    labels = _overlay_labels()
    assert labels == ["green:voip", "green:phone", "red:fault"]
    for n in ["ACT", "PWR"] + labels:
        make_led(tmp_path, n)
    everything_auto = {"registered": "auto", "call": "auto", "error": "auto"}
    assert probe(str(tmp_path), everything_auto) == {"registered": "ACT", "call": "green:phone", "error": "PWR"}
    named = {"registered": "green:voip", "call": "auto", "error": "red:fault"}
    assert probe(str(tmp_path), named) == {"registered": "green:voip", "call": "green:phone", "error": "red:fault"}


def test_overlay_leds_alone_are_found_by_auto(tmp_path):
    for n in _overlay_labels():
        make_led(tmp_path, n)
    got = probe(str(tmp_path), {"registered": "auto", "call": "auto", "error": "auto"})
    assert got == {"registered": "green:voip", "call": "green:phone", "error": "red:fault"}


def test_overlay_compiles(tmp_path):
    import subprocess
    from tests.support.need import need
    need(shutil.which("dtc") is not None, "needs dtc (scripts/setup installs device-tree-compiler)")
    r = subprocess.run(["dtc", "-@", "-I", "dts", "-O", "dtb", "-o", str(tmp_path / "o.dtbo"), OVERLAY],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
