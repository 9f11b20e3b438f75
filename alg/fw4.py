"""What sipalg puts into fw4's uci config (/etc/config/firewall), and takes back.

Run as root by the init script (`sipalg firewall sync` on every start and
reload) and by the package's removal (`sipalg firewall restore`), never by
the daemon, which runs unprivileged.  Everything goes through uci, the way
firewall4 reads it (firewall4 root/usr/share/ucode/fw4.uc):

* The accept rule for sipalg's DNAT'd flows (forward-pinholes.nft) is a
  `config include` of type nftables at position chain-prepend in
  `forward_<zone>` for every zone the WAN interface belongs to, whatever
  its name (fw4.uc parse_include; ruleset.uc renders it first in that
  chain).  A zone renamed, added or dropped is followed on the next sync.
* fw4 after each start or reload runs the script include `firewall.sipalg`
  (fw4-reload.sh, `fw4_compatible 1`), which tells the daemon.
* The kernel's SIP helper: fw4 attaches conntrack helpers per source zone
  (fw4.uc parse_zone): the zone's `list helper`, else, with `auto_helper`
  on (the default) and no masquerading, every available helper.  So on each
  zone that would attach `sip`: `sip` leaves its `list helper`, or an
  automatic zone gets `auto_helper '0'` and the other available helpers
  listed.  Only available helpers are listed (a module loaded or built in,
  fw4's own test): fw4 warns about listed helpers it doesn't have, the
  helper LuCI offers whether installed or not (openwrt/openwrt #9574).
  What the zone had is remembered in a `config sipalg_helper` section of
  the same file (fw4 reads only its own section types) and put back when
  sipalg is disabled or removed, unless the owner changed the zone since.
  Nothing is changed when no SIP helper module is on the router.

fw4 is reloaded (`fw4 -q reload`) when something changed or an include
isn't live yet, as miniupnpd's init script does when its chain is missing.
Changes are staged in a private uci save directory, so uncommitted changes
the owner has pending (LuCI) are neither committed nor lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from alg import uci

CONFDIR = "/etc/config"
INCLUDE_PATH = "/usr/share/sipalg/forward-pinholes.nft"
RELOAD_SCRIPT = "/usr/share/sipalg/fw4-reload.sh"
SCRIPT_SECTION = "sipalg"               # firewall.sipalg: the script include
INCLUDE_PREFIX = "sipalg_fwd_"          # firewall.sipalg_fwd_<zone>: the forward includes
MEMORY_TYPE = "sipalg_helper"           # what a zone's helper options were before sipalg changed them
MEMORY_PREFIX = "sipalg_helper_"
HELPERS_FILE = "/usr/share/firewall4/helpers"
SIP_HELPER = "sip"
SIP_MODULE = "nf_conntrack_sip"
FW4_STATE = "/var/run/fw4.state"
UNSET = "-"
COMMENT = "!sipalg"


def _false(v: Optional[str]) -> bool:
    return v is not None and v.strip().lower() in ("0", "off", "false", "no", "disabled")


def _words(v) -> List[str]:
    """A uci value as fw4 reads a list: a list's items, an option's words."""
    if v is None:
        return []
    return [w for item in (v if isinstance(v, list) else [v]) for w in item.split()]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() and c.isascii() or c == "_" else "_" for c in name)


# -- what the config says

class Zone:
    def __init__(self, ref: str, s: uci.Section):
        self.ref = ref                                   # uci reference: its name or @zone[N]
        self.name = s.get("name") or ""
        self.enabled = not _false(s.get("enabled"))
        self.networks = _words(s.get("network"))
        self.devices = _words(s.get("device"))
        self.masq = not _false(s.get("masq", "0")) or not _false(s.get("masq6", "0"))
        self.auto_helper = s.get("auto_helper")          # raw, None when unset
        self.helper = s.get("helper")                    # raw: None, a str (option) or a list


def zones(firewall: List[uci.Section]) -> List[Zone]:
    out, i = [], 0
    for s in firewall:
        if s.type == "zone":
            out.append(Zone(s.name or "@zone[%d]" % i, s))
            i += 1
    return [z for z in out if z.name and z.enabled]


def network_devices(network: List[uci.Section]) -> Dict[str, str]:
    """OpenWrt interface -> its device, from /etc/config/network (`device`, or `ifname` before 21.02)."""
    out = {}
    for s in network:
        if s.type == "interface" and s.name:
            dev = _words(s.get("device") or s.get("ifname"))
            if dev:
                out[s.name] = dev[0]
    return out


def ubus_networks() -> Tuple[Dict[str, str], Dict[str, str]]:
    """From netifd (`ubus call network.interface dump`), as fw4.uc read_ubus takes them:
    interface -> l3 device, interface -> the zone its data names."""
    try:
        r = subprocess.run(["ubus", "call", "network.interface", "dump"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
        dump = json.loads(r.stdout) if r.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        dump = {}
    devices, zone_of = {}, {}
    for ifc in dump.get("interface", []) if isinstance(dump, dict) else []:
        name = ifc.get("interface")
        dev = ifc.get("l3_device") or ifc.get("device")
        if name and dev:
            devices[name] = dev
        zone = (ifc.get("data") or {}).get("zone")
        if name and isinstance(zone, str):
            zone_of[name] = zone
    return devices, zone_of


def wan_zones(all_zones: Sequence[Zone], wan_if: str, devices: Dict[str, str],
              zone_of: Optional[Dict[str, str]] = None) -> List[str]:
    """Every zone the WAN interface belongs to: wan_if is an OpenWrt interface (a zone's `network`)
    or a device (a zone's `device`, or the device of one of its networks)."""
    zone_of = zone_of or {}
    nets = {wan_if} | {n for n, d in devices.items() if d == wan_if}
    out = []
    for z in all_zones:
        if nets & set(z.networks) or wan_if in z.devices or z.name in {zone_of.get(n) for n in nets}:
            out.append(z.name)
    return out


def helper_modules(helpers: List[uci.Section]) -> Dict[str, str]:
    """fw4's helper definitions (/usr/share/firewall4/helpers): name -> kernel module."""
    return {s.get("name"): s.get("module") for s in helpers if s.type == "helper" and s.get("name")}


def available_helpers(modules: Dict[str, str], sysmodule: str = "/sys/module") -> List[str]:
    """The helpers fw4 counts as available: their module loaded or built in (fw4.uc parse_helper)."""
    return sorted(n for n, m in modules.items() if m and os.path.isdir(os.path.join(sysmodule, m)))


def sip_module_installed(sysmodule: str = "/sys/module", modroot: Optional[str] = None) -> bool:
    """nf_conntrack_sip loaded, built in, or on disk to be loaded (kmod-nf-nathelper-sip/-extra)."""
    if os.path.isdir(os.path.join(sysmodule, SIP_MODULE)):
        return True
    modroot = modroot or os.path.join("/lib/modules", os.uname().release)
    for _, _, files in os.walk(modroot):
        if any(f.split(".ko")[0] == SIP_MODULE for f in files if ".ko" in f):
            return True
    return False


# -- what to change

def _q(v: str) -> str:
    return "'" + v.replace("'", "'\\''") + "'"


class Plan:
    """uci batch lines for /etc/config/firewall, and what they mean (for the log)."""

    def __init__(self):
        self.lines: List[str] = []
        self.notes: List[str] = []

    def set(self, ref: str, value: str) -> None:
        self.lines.append("set firewall.%s=%s" % (ref, _q(value)))

    def delete(self, ref: str) -> None:
        self.lines.append("delete firewall.%s" % ref)

    def add_list(self, ref: str, value: str) -> None:
        self.lines.append("add_list firewall.%s=%s" % (ref, _q(value)))

    def put(self, ref: str, value, current=None) -> None:
        """An option from `current` to exactly `value`: None unsets it, a list replaces the whole list."""
        if value is None or isinstance(value, list):
            if current is not None:
                self.delete(ref)
            for v in value or []:
                self.add_list(ref, v)
        else:
            self.set(ref, value)


def _includes(firewall: List[uci.Section]) -> Dict[str, uci.Section]:
    """sipalg's own include sections (its forward include is known by its path, whatever the name)."""
    return {s.name: s for s in firewall if s.type == "include" and s.name
            and (s.name == SCRIPT_SECTION or s.get("path") == INCLUDE_PATH)}


def plan_includes(firewall: List[uci.Section], wanted_zones: Sequence[str], plan: Plan) -> Dict[str, str]:
    """The script include, and one forward include per WAN zone (none for zones that went); returns
    zone -> section name."""
    have = _includes(firewall)
    script = have.pop(SCRIPT_SECTION, None)
    want = {("type", "script"), ("path", RELOAD_SCRIPT), ("fw4_compatible", "1")}
    if script is None or set((k, v) for k, v in script.options.items() if isinstance(v, str)) != want \
            or len(script.options) != len(want):
        if script is not None:
            plan.delete(SCRIPT_SECTION)
        plan.set(SCRIPT_SECTION, "include")
        for k, v in sorted(want):
            plan.set("%s.%s" % (SCRIPT_SECTION, k), v)
        plan.notes.append("script include firewall.%s (%s after each fw4 reload)" % (SCRIPT_SECTION, RELOAD_SCRIPT))
    by_zone = {}
    for name, s in have.items():
        zone = (s.get("chain") or "")[len("forward_"):] if (s.get("chain") or "").startswith("forward_") else None
        ok = (zone in wanted_zones and zone not in by_zone and s.get("type") == "nftables"
              and s.get("position") == "chain-prepend" and not _false(s.get("enabled")))
        if ok:
            by_zone[zone] = name
        else:
            plan.delete(name)
            plan.notes.append("removed include firewall.%s (%s)" % (name, s.get("chain")))
    taken = {s.name for s in firewall if s.name}
    for zone in wanted_zones:
        if zone in by_zone:
            continue
        name, n = INCLUDE_PREFIX + _safe(zone), 2
        while name in taken:
            name, n = "%s%s_%d" % (INCLUDE_PREFIX, _safe(zone), n), n + 1
        taken.add(name)
        plan.set(name, "include")
        for k, v in (("type", "nftables"), ("path", INCLUDE_PATH), ("position", "chain-prepend"),
                     ("chain", "forward_" + zone)):
            plan.set("%s.%s" % (name, k), v)
        by_zone[zone] = name
        plan.notes.append("include firewall.%s: pinhole accept in forward_%s" % (name, zone))
    return by_zone


def _auto(z: Zone, defaults_auto: bool) -> bool:
    return defaults_auto and not _false(z.auto_helper) and not z.masq


def _attaches_sip(z: Zone, defaults_auto: bool) -> bool:
    listed = _words(z.helper)
    return SIP_HELPER in listed if listed else _auto(z, defaults_auto)


def _encode(v) -> Tuple[str, List[str]]:
    if v is None:
        return "unset", []
    return ("list", list(v)) if isinstance(v, list) else ("option", [v])


def _decode(kind: Optional[str], items: List[str]):
    return {"list": list(items), "option": items[0] if items else None}.get(kind)


def _memories(firewall: List[uci.Section]) -> Dict[str, uci.Section]:
    return {s.get("zone"): s for s in firewall if s.type == MEMORY_TYPE and s.name and s.get("zone")}


def plan_helper_off(firewall: List[uci.Section], all_zones: Sequence[Zone], available: Sequence[str],
                    plan: Plan) -> None:
    """Every zone that would attach the SIP helper stops, remembering what it had; zones already
    changed are brought up to date (the other available helpers may have changed)."""
    defaults = uci.section(firewall, "defaults")
    defaults_auto = not _false(defaults.get("auto_helper") if defaults else None)
    memory = _memories(firewall)
    others = [h for h in available if h != SIP_HELPER]
    for z in all_zones:
        mem = memory.get(z.name)
        if mem is not None and _current_is(z, mem):
            was_helper = _decode(mem.get("was_helper_kind"), mem.get_list("was_helper"))
            was_auto = None if mem.get("was_auto_helper", UNSET) == UNSET else mem.get("was_auto_helper")
            z = _as_if(z, was_auto, was_helper)        # plan from what the owner had
        elif mem is not None:
            plan.delete(mem.name)                      # the owner changed the zone since: theirs now
            plan.notes.append("zone %s: helper settings changed since sipalg set them, left as they are" % z.name)
            mem = None
        if not _attaches_sip(z, defaults_auto):
            if mem is not None:                        # e.g. masquerading added since: nothing to keep off
                _restore_zone(z, mem, plan, _current(all_zones, z.ref))
            continue
        listed = _words(z.helper)
        if listed:
            new_helper = [h for h in listed if h != SIP_HELPER]
            new_auto = "0" if not new_helper and _auto(z, defaults_auto) else z.auto_helper
        else:
            new_helper, new_auto = list(others), "0"
        cur = _current(all_zones, z.ref)
        if (cur.auto_helper, _words(cur.helper) or None) == (new_auto, new_helper or None):
            continue
        if mem is None:
            name = MEMORY_PREFIX + _safe(z.name)
            plan.set(name, MEMORY_TYPE)
            plan.set(name + ".zone", z.name)
            plan.set(name + ".was_auto_helper", UNSET if z.auto_helper is None else z.auto_helper)
            kind, items = _encode(z.helper)
            plan.set(name + ".was_helper_kind", kind)
            plan.put(name + ".was_helper", items or None)
        else:
            name = mem.name
        plan.put(z.ref + ".auto_helper", new_auto, cur.auto_helper)
        plan.put(z.ref + ".helper", new_helper or None, cur.helper)
        plan.set(name + ".auto_helper", UNSET if new_auto is None else new_auto)
        plan.set(name + ".helper", " ".join(new_helper) or UNSET)
        plan.notes.append("zone %s: kernel SIP helper off (auto_helper %s, helpers: %s)"
                          % (z.name, new_auto if new_auto is not None else "as it was",
                             " ".join(new_helper) or "none"))


def _current(all_zones: Sequence[Zone], ref: str) -> Zone:
    return next(z for z in all_zones if z.ref == ref)


def _current_is(z: Zone, mem: uci.Section) -> bool:
    """The zone still has what sipalg set (so sipalg may change it again, or put back what it had)."""
    auto = None if mem.get("auto_helper", UNSET) == UNSET else mem.get("auto_helper")
    helper = [] if mem.get("helper", UNSET) == UNSET else mem.get("helper").split()
    return z.auto_helper == auto and _words(z.helper) == helper


def _as_if(z: Zone, auto, helper) -> Zone:
    clone = Zone.__new__(Zone)
    clone.__dict__.update(z.__dict__)
    clone.auto_helper, clone.helper = auto, helper
    return clone


def _restore_zone(z: Zone, mem: uci.Section, plan: Plan, cur: Zone) -> None:
    was_auto = None if mem.get("was_auto_helper", UNSET) == UNSET else mem.get("was_auto_helper")
    plan.put(z.ref + ".auto_helper", was_auto, cur.auto_helper)
    plan.put(z.ref + ".helper", _decode(mem.get("was_helper_kind"), mem.get_list("was_helper")), cur.helper)
    plan.delete(mem.name)
    plan.notes.append("zone %s: helper settings as they were before sipalg" % z.name)


def plan_helper_restore(firewall: List[uci.Section], all_zones: Sequence[Zone], plan: Plan) -> None:
    """Put back what sipalg changed, where the zone still has what sipalg set; forget the rest."""
    by_name = {z.name: z for z in all_zones}
    for zone, mem in _memories(firewall).items():
        z = by_name.get(zone)
        if z is not None and _current_is(z, mem):
            _restore_zone(z, mem, plan, z)
        else:
            plan.delete(mem.name)
            plan.notes.append("zone %s: changed or gone since sipalg set it, left as it is" % zone)


# -- doing it

class Firewall:
    """/etc/config/firewall (and the few other files read) under a root, for tests' throwaway roots."""

    def __init__(self, root: str = "/", uci_bin: str = "uci", fw4_bin: str = "fw4", nft_bin: str = "nft"):
        self.root = root
        self.confdir = os.path.join(root, CONFDIR.lstrip("/"))
        self.savedir = os.path.join(root, "tmp/.sipalg-uci")
        self.uci_bin, self.fw4_bin, self.nft_bin = uci_bin, fw4_bin, nft_bin

    def _path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def load(self, name: str) -> List[uci.Section]:
        try:
            return uci.load(os.path.join(self.confdir, name))
        except FileNotFoundError:
            return []

    def helpers(self) -> Dict[str, str]:
        try:
            return helper_modules(uci.load(self._path(HELPERS_FILE)))
        except FileNotFoundError:
            return {}

    def commit(self, plan: Plan) -> None:
        os.makedirs(self.savedir, exist_ok=True)
        script = "".join(line + "\n" for line in plan.lines) + "commit firewall\n"
        r = subprocess.run([self.uci_bin, "-c", self.confdir, "-t", self.savedir, "batch"], input=script.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError("uci batch failed: %s" % r.stdout.decode(errors="replace").strip()[:300])

    def fw4_loaded(self) -> bool:
        return os.path.exists(self._path(FW4_STATE))

    def live(self, zone: str) -> bool:
        r = subprocess.run([self.nft_bin, "list", "chain", "inet", "fw4", "forward_" + zone],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return r.returncode == 0 and COMMENT.encode() in r.stdout

    def reload(self) -> Optional[str]:
        try:
            r = subprocess.run([self.fw4_bin, "-q", "reload"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        return None if r.returncode == 0 else r.stdout.decode(errors="replace").strip()[:300]


def sync(fw: Firewall, wan_if: str, helper_off: bool, devices: Optional[Dict[str, str]] = None,
         zone_of: Optional[Dict[str, str]] = None, reload: bool = True, log=print) -> int:
    """Includes for the WAN zones and the SIP helper off (helper_off) or as it was; fw4 reloaded when
    that changed something or an include isn't live yet.  Returns 0, or 1 when something failed."""
    firewall = fw.load("firewall")
    all_zones = zones(firewall)
    if devices is None:
        devices = dict(network_devices(fw.load("network")))
        ubus_devices, zone_of = ubus_networks()
        devices.update(ubus_devices)
    wanted = wan_zones(all_zones, wan_if, devices, zone_of)
    plan = Plan()
    plan_includes(firewall, wanted, plan)
    if not wanted:
        log("sipalg.main.wan_if %r is in no firewall zone: fw4 will drop inbound calls and media "
            "(add it to the WAN zone's networks)" % wan_if)
    if helper_off and sip_module_installed(fw._path("/sys/module"), fw._path("/lib/modules/" + os.uname().release)):
        plan_helper_off(firewall, all_zones, available_helpers(fw.helpers(), fw._path("/sys/module")), plan)
    else:
        plan_helper_restore(firewall, all_zones, plan)
    return _apply(fw, plan, wanted, reload, log)


def restore(fw: Firewall, reload: bool = True, log=print) -> int:
    """Everything sipalg added to the firewall config taken out, the helper settings put back."""
    firewall = fw.load("firewall")
    plan = Plan()
    for name, s in _includes(firewall).items():
        plan.delete(name)
        plan.notes.append("removed include firewall.%s" % name)
    plan_helper_restore(firewall, zones(firewall), plan)
    return _apply(fw, plan, [], reload, log)


def _apply(fw: Firewall, plan: Plan, wanted: Sequence[str], reload: bool, log) -> int:
    if plan.lines:
        try:
            fw.commit(plan)
        except (OSError, RuntimeError) as e:
            log("firewall config not changed: %s" % e)
            return 1
        for note in plan.notes:
            log("firewall: %s" % note)
    if not reload or not fw.fw4_loaded():
        return 0
    stale = [z for z in wanted if not fw.live(z)]
    if plan.lines or stale:
        err = fw.reload()
        if err is not None:
            log("fw4 reload failed: %s" % err)
            return 1
        log("fw4 reloaded (%s)" % ("config changed" if plan.lines else "include not live in forward_" + stale[0]))
    return 0


# -- `sipalg firewall`

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Keep fw4's uci config in step with sipalg (run as root by the init script and the "
                     "package's removal): `sync` adds the fw4 includes for the WAN zones and turns the kernel's "
                     "SIP helper off the uci way while sipalg is enabled, or puts it back; `restore` takes "
                     "everything back.  fw4 is reloaded when that changed something.")
    p.add_argument("action", choices=("sync", "restore"))
    p.add_argument("--config", default=os.path.join(CONFDIR, "sipalg"), help="sipalg's uci file")
    p.add_argument("--root", default="/", help="the router's root (tests)")
    p.add_argument("--no-reload", action="store_true", help="change the config only (first boot: fw4 not up yet)")


def run(args: argparse.Namespace) -> int:
    from alg import options

    def log(msg):
        print("sipalg: %s" % msg, file=sys.stderr)

    fw = Firewall(args.root)
    if args.action == "restore":
        return restore(fw, not args.no_reload, log)
    try:
        s = options.read(args.config if os.path.exists(args.config) else None, {})
    except (ValueError, OSError) as e:
        log("firewall left as it is: %s" % e)
        return 2
    return sync(fw, s.wan_if, bool(s.enabled and s.disable_kernel_helper), reload=not args.no_reload, log=log)
