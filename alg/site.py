"""What the settings name on this router, looked up: devices, addresses, LAN prefixes, LEDs.

The settings say `wan`/`lan` (OpenWrt interfaces) or device names; the
daemon needs the devices, their ifindexes (a queued packet's in/out
interface decides its direction), the WAN address and the LAN prefixes,
all read over rtnetlink, and the engine's Config.  A Site is made anew on
each reload, so a bad value or a device that isn't there leaves the
running one in place.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import List, Optional

from alg import options
from alg.core.addr import Network
from alg.core.config import Config
from alg.kernel.rtnetlink import Rtnl
from alg.leds import LedConfig


def resolve_device(name: str, key: str) -> str:
    """A device name as given, or the device behind an OpenWrt logical interface ('wan' -> 'eth1')."""
    if os.path.exists("/sys/class/net/%s" % name):
        return name
    try:
        r = subprocess.run(["ubus", "call", "network.interface.%s" % name, "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        r = None
    if r is not None and r.returncode == 0:
        st = json.loads(r.stdout)
        dev = st.get("l3_device") or st.get("device")
        if dev:
            return dev
    raise options.OptionError("%s: %r is neither a network device nor an OpenWrt interface "
                              "(ubus network.interface.%s)" % (key, name, name))


def engine_config(s: options.Settings, wan_ip: Optional[str], lan_nets: List[str]) -> Config:
    limits = {o.name: getattr(s, o.attr) for o in options.OPTIONS if o.name.startswith("limit_")}
    return Config(wan_ip=wan_ip, lan_nets=lan_nets, sip_ports=s.sip_port, rtp_ports=s.rtp_ports,
                  answer_keepalives=s.answer_keepalives, media_from=s.media_from, exclude=s.exclude, **limits)


class Site:
    def __init__(self, s: options.Settings, rtnl: Rtnl, wan_ip: Optional[str] = None):
        self.settings = s
        self.wan_if = resolve_device(s.wan_if, "sipalg.main.wan_if")
        self.lan_ifs = [resolve_device(name, "sipalg.main.lan_if") for name in s.lan_if]
        self.lan_if = ",".join(self.lan_ifs)           # for logs and status
        lan_nets = list(s.lan_net)
        if not lan_nets:
            for dev in self.lan_ifs:
                nets = rtnl.networks(dev)
                if not nets:
                    raise options.OptionError("LAN interface %s has no IPv4 network: set sipalg.main.lan_net"
                                              % dev)
                lan_nets += [n for n in nets if n not in lan_nets]
        self.lan_nets = [Network(n) for n in lan_nets]
        self.leds = LedConfig.from_settings(s)
        self.config = engine_config(s, wan_ip, lan_nets)
        self.indexes(rtnl)

    def indexes(self, rtnl: Rtnl) -> None:
        """The devices' ifindexes now (a device that went away and came back has a new one)."""
        self.wan_index = rtnl.ifindex(self.wan_if) or 0
        self.lan_indexes = set(i for i in (rtnl.ifindex(d) for d in self.lan_ifs) if i)
