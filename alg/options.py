"""Every setting sipalg reads, in one table: names, defaults, allowed values, help.

The command line (flags), the uci file (/etc/config/sipalg), the daemon and
its reload all go through this table, and a test holds the LuCI page's
options and choices to it.  Precedence: command line over uci file over
the defaults here.  Values are parsed from text exactly as uci holds them (no white
space trimmed, as LuCI's datatypes don't trim either); a bad one raises OptionError naming the option, the value and what is allowed.

Each option says how a reload (SIGHUP, `reload_config`, LuCI's Save &
Apply) applies a new value:
  LIVE     in place, between two packets;
  REBUILD  the kernel table and queue rules are rebuilt holding the live
           bindings (calls continue).
No option of the file needs a restart (`table`, a flag only, can't change).
This module is light on purpose: `sipalg status` imports it (LuCI polls that).
"""

DEFAULT_CONFIG = "/etc/config/sipalg"
DEFAULT_STATE_DIR = "/var/run/sipalg"
DEFAULT_LED_ROOT = "/sys/class/leds"

LIVE = "live"
REBUILD = "rebuild"

MAIN = "main"        # config sipalg 'main'
LEDS = "leds"        # config leds 'leds'

TRUE = ("1", "on", "true", "yes", "enabled")
FALSE = ("0", "off", "false", "no", "disabled")


class OptionError(ValueError):
    pass


def _port(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return None
    return int(text)


def parse_port_range(text):
    """'LO-HI' -> (lo, hi); None when it isn't one within 1..65535."""
    parts = text.split("-")
    if len(parts) != 2:
        return None
    lo, hi = _port(parts[0]), _port(parts[1])
    if lo is None or hi is None or lo > hi:
        return None
    return lo, hi


def _cidr(text):
    from alg.core.addr import Network          # only when a LAN prefix is given
    try:
        Network(text)
    except ValueError:
        return None
    return text


def _name(text):
    """A device or OpenWrt interface name: what `ip link` or uci would take."""
    if not text or len(text) > 15 or any(c in text for c in "/ \t\n\0"):
        return None
    return text


def _led(text):
    if "/" in text or "\0" in text or text in (".", ".."):
        return None
    return text


class Option:
    """One setting.

    section: MAIN or LEDS (uci section), None for a command-line-only one.
    name:    the uci option name, also the Settings attribute (LEDS ones as led_<name>).
    kind:    "bool", "int", "port", "ports" (a uci list), "port_range", "choice",
             "nets" (a uci list of CIDR prefixes), "iface", "ifaces" (a list of them), "path",
             "led", "name".
    default: the value used when neither the command line nor the file says.
    choices: what "choice" accepts; the LuCI page offers exactly these.
    reload:  LIVE or REBUILD (see the module docstring).
    flag:    the command-line flag, or None when only the file sets it.
    help:    one sentence for --help and the README.
    """

    __slots__ = ("section", "name", "kind", "default", "choices", "reload", "flag", "help", "low", "high")

    def __init__(self, section, name, kind, default, help, reload=LIVE, flag=None, choices=None,
                 low=None, high=None):
        self.section = section
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.reload = reload
        self.flag = flag
        self.choices = choices
        self.low = low
        self.high = high

    @property
    def key(self):
        """Where it is set: sipalg.main.NAME, sipalg.leds.NAME or (a flag only) --NAME."""
        return "sipalg.%s.%s" % (self.section, self.name) if self.section else self.flag

    @property
    def attr(self):
        return "led_" + self.name if self.section == LEDS else self.name

    @property
    def multiple(self):
        return self.kind in ("ports", "nets", "ifaces")

    def allowed(self):
        """What this option accepts, in words (for error messages and --help)."""
        k = self.kind
        if k == "bool":
            return "0 or 1"
        if k == "int":
            return "a whole number %d-%d" % (self.low, self.high)
        if k in ("port", "ports"):
            return "a port 1-65535"
        if k == "port_range":
            return "LO-HI with %d <= LO < HI <= 65535, at least 4 ports" % self.low
        if k == "choice":
            return "one of " + ", ".join(self.choices)
        if k == "nets":
            return "a network prefix such as 192.168.1.0/24"
        if k in ("iface", "ifaces"):
            return "a network device or OpenWrt interface name"
        if k == "name":
            return "letters, digits and _"
        if k == "led":
            return "an LED name (a directory in %s), 'auto' or empty" % DEFAULT_LED_ROOT
        return "a path"

    def parse(self, value):
        """The value from its text (a list of texts for a list option); OptionError if bad."""
        if self.multiple:
            items = value if isinstance(value, list) else [value]
            return [self._one(v) for v in items]
        if isinstance(value, list):
            if len(value) != 1:
                raise OptionError("%s: one value expected, got a list %r" % (self.key, value))
            value = value[0]
        return self._one(value)

    def _one(self, text):
        k = self.kind
        v = None
        if not isinstance(text, str):
            text = str(text)
        if k == "bool":
            t = text.lower()
            v = True if t in TRUE else False if t in FALSE else None
        elif k == "int":
            v = int(text) if text.isdigit() and self.low <= int(text) <= self.high else None
        elif k in ("port", "ports"):
            v = _port(text)
        elif k == "port_range":
            v = parse_port_range(text)
            if v is not None and (v[0] < self.low or v[1] - v[0] + 1 < 4):
                v = None
        elif k == "choice":
            v = text if text in self.choices else None
        elif k == "nets":
            v = _cidr(text)
        elif k in ("iface", "ifaces"):
            v = _name(text)
        elif k == "led":
            v = _led(text)
        elif k == "name":
            v = text if text and all(c.isalnum() or c == "_" for c in text) else None
        else:
            v = text if text.strip() else None
        if v is None:
            raise OptionError("%s: %r is not allowed: %s" % (self.key, text, self.allowed()))
        return v


OPTIONS = (
    Option(MAIN, "enabled", "bool", "0", reload=LIVE,
           help="run the daemon at all (read by the init script: 0 stops it, 1 starts it)"),
    Option(MAIN, "wan_if", "iface", None, reload=REBUILD, flag="--wan-if",
           help="the interface facing the SIP server; its IPv4 address is followed as it changes"),
    Option(MAIN, "lan_if", "ifaces", None, reload=REBUILD, flag="--lan-if",
           help="an interface facing phones (repeatable: a VoIP VLAN beside br-lan); their networks are "
                "the LAN unless lan_net says"),
    Option(MAIN, "sip_port", "ports", ["5060"], reload=REBUILD, flag="--sip-port",
           help="a UDP port that carries SIP, repeatable"),
    Option(MAIN, "rtp_ports", "port_range", "1024-65535", reload=LIVE, flag="--rtp-ports", low=1024,
           help="the port range media pinholes may use, on the LAN and the WAN side"),
    Option(MAIN, "lan_net", "nets", [], reload=LIVE, flag="--lan-net",
           help="a LAN prefix, repeatable; none given: the LAN interface's network"),
    Option(MAIN, "answer_keepalives", "choice", "crlf", reload=LIVE, flag="--answer-keepalives",
           choices=("off", "crlf", "options"),
           help="which keep-alives the router answers for a registered phone, see README"),
    Option(MAIN, "log_level", "choice", "info", reload=LIVE, flag="--log-level",
           choices=("debug", "info", "warning", "error"),
           help="info: one line per registration, call and refusal; debug: every rewrite"),
    Option(MAIN, "queue_num", "int", "5060", reload=REBUILD, flag="--queue-num", low=0, high=65535,
           help="the NFQUEUE number SIP is handed over on (5060: no feed package's default; "
                "etherwake-nfqueue takes 0, snort3 4-7)"),
    Option(MAIN, "disable_kernel_helper", "bool", "0", reload=LIVE,
           help="keep the kernel's own SIP helper (nf_conntrack_sip) from rewriting SIP too"),
    Option(MAIN, "inbound_sip", "choice", "peers", reload=REBUILD, choices=("peers", "any"),
           help="who may start a SIP flow to a registered phone: peers (what it sent SIP to, and "
                "sip_peer) or any internet host"),
    Option(MAIN, "exclude", "nets", [], reload=LIVE,
           help="a LAN host or network the ALG leaves alone (a PBX doing its own NAT traversal), repeatable"),
    Option(MAIN, "sip_peer", "nets", [], reload=REBUILD,
           help="a host or network that may always send SIP to the phones (an ITSP's second proxy), repeatable"),
    Option(MAIN, "wan_sip_rate", "int", "200", reload=REBUILD, low=0, high=1000000,
           help="SIP datagrams a second one WAN host may send before the rest pass as plain NAT, "
                "never reaching the daemon (0: no limit)"),
    Option(MAIN, "lan_sip_rate", "int", "500", reload=REBUILD, low=0, high=1000000,
           help="SIP datagrams a second one LAN host may send before the rest pass as plain NAT, "
                "unrewritten, so one flooding device can't starve the other phones (0: no limit)"),
    Option(MAIN, "media_from", "choice", "sdp", reload=LIVE, choices=("sdp", "any"),
           help="sdp: a pinhole admits only the far end the SDP names; any: anyone until that SDP "
                "arrives (for odd providers)"),
    Option(MAIN, "limit_host_bindings", "int", "8", reload=LIVE, low=1, high=65535,
           help="signalling bindings one LAN host may hold"),
    Option(MAIN, "limit_host_registrations", "int", "16", reload=LIVE, low=1, high=65535,
           help="registrations one LAN host may hold"),
    Option(MAIN, "limit_host_calls", "int", "16", reload=LIVE, low=1, high=65535,
           help="calls one LAN host may have at once"),
    Option(MAIN, "limit_sdp_media", "int", "8", reload=LIVE, low=1, high=64,
           help="media streams of one SDP that get pinholes"),
    Option(MAIN, "limit_bindings", "int", "4096", reload=LIVE, low=16, high=65535,
           help="bindings and pinholes in all"),
    Option(MAIN, "limit_registrations", "int", "1024", reload=LIVE, low=1, high=1000000,
           help="registrations in all"),
    Option(MAIN, "limit_calls", "int", "1024", reload=LIVE, low=1, high=1000000,
           help="calls in all"),
    Option(MAIN, "state_dir", "path", DEFAULT_STATE_DIR, reload=LIVE, flag="--state-dir",
           help="where the daemon writes its status for `sipalg status`"),
    Option(None, "table", "name", "sipalg", reload=REBUILD, flag="--table",
           help="the name of the daemon's own nftables table"),
    Option(LEDS, "enabled", "bool", "0", reload=LIVE,
           help="show registered / call / error on the board's LEDs"),
    Option(LEDS, "registered", "led", "", reload=LIVE,
           help="the LED that is on while a phone is registered ('auto' probes the board)"),
    Option(LEDS, "call", "led", "", reload=LIVE,
           help="the LED that is on during a call, blinking while one is set up"),
    Option(LEDS, "error", "led", "", reload=LIVE,
           help="the LED that is on when the firewall could not be updated lately"),
    Option(LEDS, "sysfs_root", "path", DEFAULT_LED_ROOT, reload=LIVE,
           help="where the LEDs are (tests point it at a fake sysfs)"),
)

BY_KEY = dict(((o.section, o.name), o) for o in OPTIONS)


def option(section, name):
    return BY_KEY[(section, name)]


class Settings:
    """Every option's value, as attributes named after the options (leds ones led_<name>),
    plus `config_path`, the uci file they were read from (None: defaults and flags only)."""

    def __init__(self, values, config_path=None):
        self.config_path = config_path
        for o in OPTIONS:
            setattr(self, o.attr, values[o.attr])

    def values(self):
        return dict((o.attr, getattr(self, o.attr)) for o in OPTIONS)

    def changed(self, other):
        """The options whose value differs in other."""
        return [o for o in OPTIONS if getattr(self, o.attr) != getattr(other, o.attr)]


def read(path=None, flags=None, sections=None):
    """Settings from defaults, then the uci file (or already parsed sections), then flags.

    flags: {attr: value} given on the command line (already parsed), None for unset.
    Raises OptionError (a bad value, a missing wan_if/lan_if) or uci.UciError."""
    if sections is None and path is not None:
        from alg import uci
        sections = uci.load(path)
    found = {}
    if sections:
        from alg import uci
        for name, type_ in ((MAIN, "sipalg"), (LEDS, "leds")):
            sec = uci.section(sections, type_, name)
            if sec is not None:
                found[name] = sec
    values = {}
    for o in OPTIONS:
        sec = found.get(o.section)
        if sec is not None and o.name in sec.options:
            values[o.attr] = o.parse(sec.options[o.name])
        elif o.default is None:
            values[o.attr] = None
        else:
            values[o.attr] = o.parse(o.default)
        if flags and o.flag and flags.get(o.attr) not in (None, []):
            values[o.attr] = flags[o.attr]
    for name in ("wan_if", "lan_if"):
        if not values[name]:
            raise OptionError("sipalg.main.%s is not set: give --%s or option %s in the config"
                              % (name, name.replace("_", "-"), name))
    if values["wan_if"] in values["lan_if"]:
        raise OptionError("sipalg.main.wan_if and lan_if are both %r: they must be different interfaces"
                          % values["wan_if"])
    return Settings(values, path)


def add_arguments(parser, only=None, required=()):
    """One flag per option that has one (or those named in only), parsed by the option itself."""
    import argparse

    for o in OPTIONS:
        if not o.flag or (only is not None and o.name not in only):
            continue

        def convert(text, _o=o):
            try:
                return _o._one(text)
            except OptionError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        default = o.default if not o.multiple or o.default is None else ", ".join(o.default) or "none"
        help_text = "%s [%s; default %s]" % (o.help, o.allowed(), default if default is not None else "none")
        kw = {"dest": o.attr, "default": None, "type": convert, "help": help_text,
              "required": o.name in required}
        if o.multiple:
            kw["action"] = "append"
        if o.choices:
            kw["metavar"] = "{%s}" % ",".join(o.choices)
        parser.add_argument(o.flag, **kw)
