"""The one settings table: defaults, allowed values, errors that name the option, precedence."""
import argparse
import os
import subprocess
import sys

import pytest

from alg import daemon, options
from alg.core.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_CONFIG = os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.config")

# (option, a bad value, what the error must say it allows)
BAD = [
    ("log_level", "verbose", "one of debug, info, warning, error"),
    ("queue_num", "abc", "a whole number 0-65535"),
    ("queue_num", "70000", "a whole number 0-65535"),
    ("rtp_ports", "9-3", "LO-HI with 1024 <= LO < HI <= 65535"),
    ("rtp_ports", "1000-2000", "LO-HI with 1024 <= LO < HI <= 65535"),
    ("sip_port", "99999", "a port 1-65535"),
    ("sip_port", "0", "a port 1-65535"),
    ("lan_net", "10.0.0.0/33", "a network prefix"),
    ("answer_keepalives", "maybe", "one of off, crlf, options"),
    ("disable_kernel_helper", "2", "0 or 1"),
    ("wan_if", "eth0/1", "a network device or OpenWrt interface name"),
]


def _file(tmp_path, body, main="\toption wan_if 'wan'\n\toption lan_if 'lan'\n"):
    p = tmp_path / "sipalg"
    p.write_text("config sipalg 'main'\n" + main + body)
    return str(p)


def test_defaults_parse_and_the_core_agrees():
    for o in options.OPTIONS:
        if o.default is not None:
            o.parse(o.default)
    c = Config()
    s = {o.name: o.parse(o.default) for o in options.OPTIONS if o.default is not None}
    assert list(c.sip_ports) == s["sip_port"]
    assert c.rtp_ports == s["rtp_ports"]
    assert c.answer_keepalives == s["answer_keepalives"]
    assert c.media_from == s["media_from"]
    for name, value in Config.LIMITS.items():
        if ("main", name) in options.BY_KEY:
            assert s[name] == value, name


@pytest.mark.parametrize("name, value, allowed", BAD)
def test_a_bad_value_names_the_option_the_value_and_what_is_allowed(tmp_path, name, value, allowed):
    kind = "list" if options.option("main", name).multiple else "option"
    path = _file(tmp_path, "\t%s %s '%s'\n" % (kind, name, value))
    with pytest.raises(options.OptionError) as ei:
        options.read(path)
    text = str(ei.value)
    assert "sipalg.main.%s" % name in text and repr(value) in text and allowed in text


@pytest.mark.parametrize("name, value, allowed", BAD)
def test_start_with_a_bad_value_exits_2_without_a_traceback(tmp_path, name, value, allowed):
    kind = "list" if options.option("main", name).multiple else "option"
    path = _file(tmp_path, "\t%s %s '%s'\n" % (kind, name, value))
    r = subprocess.run([sys.executable, "-m", "alg", "run", "--config", path], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "sipalg.main.%s" % name in r.stderr and allowed in r.stderr


def test_a_bad_flag_is_refused_by_the_same_rule():
    p = argparse.ArgumentParser()
    daemon.add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--queue-num", "70000"])
    assert p.parse_args(["--queue-num", "7"]).queue_num == 7
    assert p.parse_args(["--sip-port", "5060", "--sip-port", "5080"]).sip_port == [5060, 5080]


def test_flags_over_file_over_defaults(tmp_path):
    path = _file(tmp_path, "\tlist sip_port '5080'\n\toption log_level 'debug'\n")
    s = options.read(path)
    assert s.sip_port == [5080] and s.log_level == "debug" and s.queue_num == 5060 and s.rtp_ports == (1024, 65535)
    s = options.read(path, {"sip_port": [5090], "log_level": None, "queue_num": 3})
    assert s.sip_port == [5090] and s.log_level == "debug" and s.queue_num == 3
    assert s.changed(options.read(path)) == [options.option("main", "sip_port"), options.option("main", "queue_num")]


def test_interfaces_are_required_and_different(tmp_path):
    with pytest.raises(options.OptionError, match="sipalg.main.wan_if is not set"):
        options.read(_file(tmp_path, "", main="\toption lan_if 'lan'\n"))
    with pytest.raises(options.OptionError, match="different interfaces"):
        options.read(_file(tmp_path, "", main="\toption lan_if 'lan'\n\toption wan_if 'lan'\n"))


def test_shipped_config_reads_and_turns_the_kernel_helper_off():
    s = options.read(SHIPPED_CONFIG)
    assert s.wan_if == "wan" and s.lan_if == ["lan"] and s.disable_kernel_helper is True and s.led_enabled is False


def test_a_list_where_one_value_belongs_is_refused(tmp_path):
    path = _file(tmp_path, "\tlist log_level 'info'\n\tlist log_level 'debug'\n")
    with pytest.raises(options.OptionError, match="sipalg.main.log_level: one value expected"):
        options.read(path)


def test_help_names_every_flag_with_what_it_allows():
    r = subprocess.run([sys.executable, "-m", "alg", "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for o in options.OPTIONS:
        if o.flag:
            assert o.flag in r.stdout
    assert "one of off, crlf, options" in r.stdout
