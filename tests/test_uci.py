"""alg/uci.py reads /etc/config files with OpenWrt's quoting rules (openwrt/uci file.c)."""
import os

import pytest

from alg import uci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# shaped like a router's own files after some hand editing
NETWORK = """
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config globals 'globals'
	option ula_prefix 'fd2b:6b1c:94a4::/48'

config device
	option name 'br-lan'
	option type 'bridge'
	list ports 'lan1'
	list ports 'lan2'
	list ports "lan3"   # the third port
	list ports lan4

config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '192.168.1.1'
	option netmask '255.255.255.0'
	option ip6assign '60'

config interface 'wan'
	option device 'eth1'
	option proto 'pppoe'
	option username 'user@isp'
	option password 'pa ss#word'  ; option ipv6 'auto'
"""

FIREWALL = r"""config defaults
	option syn_flood	1
	option input		REJECT
	option output		ACCEPT
	option forward		REJECT

config zone
	option name		wan
	list   network		'wan'
	list   network		'wan6'
	option masq		1

config rule
	option name		Allow-DHCP-Renew
	option src		wan
	option family		ipv4
	option target		ACCEPT
	option extra		"-m comment --comment \"say \\\"hi\\\"\""

config include 'sipalg'
	option type 'script'
	option path '/usr/share/sipalg/fw4-reload.sh'
	option fw4_compatible '1'
"""


def test_network_file_sections_options_lists_and_comments():
    secs = uci.parse(NETWORK, "network")
    names = [(s.type, s.name) for s in secs]
    assert names == [("interface", "loopback"), ("globals", "globals"), ("device", None),
                     ("interface", "lan"), ("interface", "wan")]
    dev = uci.section(secs, "device")
    assert dev.get_list("ports") == ["lan1", "lan2", "lan3", "lan4"]
    wan = uci.section(secs, "interface", "wan")
    assert wan.get("password") == "pa ss#word"          # '#' inside quotes is data
    assert wan.get("ipv6") == "auto"                    # ';' ends a statement
    assert uci.section(secs, "interface", "lan").get("ipaddr") == "192.168.1.1"


def test_firewall_file_bare_words_tabs_and_escapes_in_double_quotes():
    secs = uci.parse(FIREWALL, "firewall")
    d = uci.section(secs, "defaults")
    assert d.get("input") == "REJECT" and d.get_bool("syn_flood") is True
    zone = uci.section(secs, "zone")
    assert zone.get_list("network") == ["wan", "wan6"]
    rule = uci.section(secs, "rule")
    assert rule.get("extra") == '-m comment --comment "say \\"hi\\""'
    assert uci.section(secs, "include", "sipalg").get("path") == "/usr/share/sipalg/fw4-reload.sh"


@pytest.mark.parametrize("text,value", [
    ("option v 'it''s'", "its"),                         # adjacent quoted parts join
    ("option v 'a'\"b\"c", "abc"),
    ("option v 'back\\slash'", "back\\slash"),          # single quotes: no escapes
    ("option v \"tab\\there\"", "tabthere"),            # double quotes: backslash takes the next char
    ("option v two\\ words", "two words"),               # bare word: backslash escapes a space
    ("option v 'first line\nsecond line'", "first line\nsecond line"),
    ("option v \"joined \\\nline\"", "joined line"),     # backslash-newline continues
    ("option v ''", ""),
    ("o v short", "short"),                              # one-letter keywords
])
def test_quoting_rules(text, value):
    sec = uci.parse("config t 'n'\n" + text + "\n")[0]
    assert sec.get("v") == value


def test_list_after_option_of_same_name_and_short_keywords():
    secs = uci.parse("c sipalg main\nl sip_port 5060\nlist sip_port 5080\n")
    assert secs[0].name == "main" and secs[0].get_list("sip_port") == ["5060", "5080"]


@pytest.mark.parametrize("text,message", [
    ("config t 'n'\noption v 'open\n", "unterminated single quote"),
    ("config t 'n'\noption v \"open\n", "unterminated double quote"),
    ("option v 1\n", "before any 'config' line"),
    ("config t 'n'\nopt v 1\n", "unknown keyword 'opt'"),
    ("config t 'bad-name'\n", "invalid section name 'bad-name'"),
    ("config t 'n'\noption bad.key 1\n", "invalid option name 'bad.key'"),
    ("config t 'n'\noption v\n", "'option NAME VALUE' expected"),
    ("config t 'n'\noption v 1 2\n", "'option NAME VALUE' expected"),
    ("config t 'n'\noption v x\\", "unterminated \\"),
])
def test_errors_name_the_file_line_and_problem(text, message):
    with pytest.raises(uci.UciError) as e:
        uci.parse(text, "/etc/config/x")
    assert message in str(e.value) and str(e.value).startswith("/etc/config/x:")


def test_error_line_number_points_at_the_statement():
    with pytest.raises(uci.UciError) as e:
        uci.parse("config t 'n'\n\t# note\n\toption v 'multi\nline'\n\toption bad-key 1\n", "f")
    assert str(e.value).startswith("f:5:")


def test_boolean_values_as_config_get_bool_reads_them():
    sec = uci.parse("config t n\n" + "".join("option %s %s\n" % kv for kv in
                    [("a", "1"), ("b", "on"), ("c", "true"), ("d", "yes"), ("e", "enabled"),
                     ("f", "0"), ("g", "off"), ("h", "false"), ("i", "no"), ("j", "disabled"),
                     ("k", "maybe")]))[0]
    assert [sec.get_bool(k) for k in "abcde"] == [True] * 5
    assert [sec.get_bool(k) for k in "fghij"] == [False] * 5
    with pytest.raises(uci.UciError):
        sec.get_bool("k")
    assert sec.get_bool("missing", True) is True


def test_shipped_config_reads():
    secs = uci.load(os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.config"))
    main = uci.section(secs, "sipalg", "main")
    assert main.get("enabled") == "0" and main.get_list("sip_port") == ["5060"]
    assert main.get("wan_if") == "wan" and main.get("answer_keepalives") == "crlf"
    assert uci.section(secs, "leds", "leds").get_bool("enabled") is False
