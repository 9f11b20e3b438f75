"""Status LEDs: registered, call and error shown on /sys/class/leds.

An ATA or a Raspberry Pi router has no screen: whether the phones are
registered, a call is up, or the ALG is in trouble should be visible from
across the room.  The daemon calls StatusLeds.update() once a second and
after each batch of packets; an LED is written only when its state changes.

LEDs are taken over only while the daemon runs: the kernel trigger they had
(mmc0, default-on, heartbeat, ...) is put back on stop, so the board looks as
before when sipalg is stopped or disabled.

'auto' picks an LED by name, in this order (see hw/README.md):
  registered  ACT, led0 (Raspberry Pi, green), then a generic telephony LED
  error       PWR, led1 (Raspberry Pi, red), then a generic red/amber one
  call        a generic telephony LED only (a Pi has none to spare)
Generic names follow the kernel's [device:]colour:function scheme
(Documentation/leds/leds-class.rst).  Only LEDs whose function names
telephony (voip, sip, phone, fxs, tel) or, for error, status/fault/alarm are
ever taken: port, wifi and USB LEDs keep their triggers.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from alg import options
from alg.core.call_states import CONFIRMED

log = logging.getLogger("sipalg.leds")

DEFAULT_ROOT = options.DEFAULT_LED_ROOT
ROLES = ("registered", "call", "error")
AUTO = "auto"

# Raspberry Pi kernels: ACT/PWR since the LEDs were relabelled, led0/led1 before.
PI_NAMES = {"registered": ("ACT", "led0"), "error": ("PWR", "led1"), "call": ()}

# Generic fallback: (colours accepted, functions in order of preference).
# Trailing digits of the function are ignored (voip0, phone1, fxs2).
GENERIC = {
    "registered": (("green", "white", "blue"), ("voip", "sip", "phone", "fxs", "tel")),
    "call": (("green", "white", "blue", "amber", "orange", "yellow"), ("phone", "fxs", "tel", "voip", "sip")),
    "error": (("red", "amber", "orange"), ("voip", "sip", "phone", "fxs", "tel", "fault", "alarm", "status")),
}

# After the nft failure count last rose, the error LED stays on this long.
ERROR_HOLD = 60.0
# Blink of the call LED while a call is being set up (ms on, ms off).
RINGING_BLINK = (250, 250)

OFF, ON, BLINK = "off", "on", "blink"


class LedState(NamedTuple):
    """What the three LEDs should show."""
    registered: str = OFF
    call: str = OFF
    error: str = OFF


class LedConfig:
    """The `config leds 'leds'` section: enabled, and one LED name per role.

    A name is '' (not used), 'auto' (probe), or a directory under the root.
    """

    def __init__(self, enabled: bool = False, registered: str = "", call: str = "", error: str = "",
                 root: str = DEFAULT_ROOT):
        self.enabled = enabled
        self.names = {"registered": registered, "call": call, "error": error}
        self.root = root
        self.check()

    @classmethod
    def from_section(cls, sec) -> "LedConfig":
        """From an alg.uci.Section, or None (no section: LEDs off), through the option table."""
        values = {}
        for name in ("enabled", "sysfs_root") + ROLES:
            o = options.option(options.LEDS, name)
            values[name] = o.parse(sec.options[name] if sec is not None and name in sec.options else o.default)
        return cls(values["enabled"], values["registered"], values["call"], values["error"],
                   root=values["sysfs_root"])

    @classmethod
    def from_settings(cls, s) -> "LedConfig":
        return cls(s.led_enabled, s.led_registered, s.led_call, s.led_error, root=s.led_sysfs_root)

    def check(self) -> None:
        """Raise ValueError naming a bad LED name."""
        seen: Dict[str, str] = {}
        for role in ROLES:
            name = self.names[role]
            if name in ("", AUTO):
                continue
            if "/" in name or "\0" in name or name in (".", ".."):
                raise ValueError("leds.%s: %r is not an LED name (a directory in %s)" % (role, name, self.root))
            if name in seen:
                raise ValueError("leds: LED %r given for both %s and %s" % (name, seen[name], role))
            seen[name] = role

    def __eq__(self, other) -> bool:
        return (isinstance(other, LedConfig) and (self.enabled, self.names, self.root)
                == (other.enabled, other.names, other.root))


def parse_trigger(text: str) -> Tuple[Optional[str], List[str]]:
    """'none [mmc0] timer' -> ('mmc0', ['none', 'mmc0', 'timer']): the active one is bracketed."""
    active = None
    names = []
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            word = word[1:-1]
            active = word
        names.append(word)
    return active, names


def _function_of(name: str) -> Tuple[Optional[str], Optional[str]]:
    """'soc:green:voip0' or 'green:voip0' -> ('green', 'voip'); (None, None) for other names."""
    parts = name.lower().split(":")
    if len(parts) < 2:
        return None, None
    return parts[-2], parts[-1].rstrip("0123456789")


def probe(root: str, names: Dict[str, str]) -> Dict[str, str]:
    """role -> LED directory name, for the roles that are set and found.

    Explicit names are claimed first, then 'auto' roles in ROLES order, each
    skipping LEDs already claimed.  A missing explicit LED is left out here
    and reported by the caller.
    """
    try:
        present = sorted(os.listdir(root))
    except OSError:
        return {}
    out: Dict[str, str] = {}
    for role in ROLES:
        if names.get(role) not in ("", AUTO, None):
            out[role] = names[role]
    claimed = set(out.values())
    for role in ROLES:
        if names.get(role) != AUTO:
            continue
        pick = _auto_pick(role, present, claimed)
        if pick is not None:
            out[role] = pick
            claimed.add(pick)
    return out


def _auto_pick(role: str, present: List[str], claimed: set) -> Optional[str]:
    for name in PI_NAMES[role]:
        if name in present and name not in claimed:
            return name
    colours, functions = GENERIC[role]
    best = None
    for name in present:
        if name in claimed:
            continue
        colour, function = _function_of(name)
        if colour in colours and function in functions:
            rank = functions.index(function)
            if best is None or rank < best[0]:
                best = (rank, name)
    return best[1] if best else None


class Led:
    """One LED under a sysfs root, taken over from its kernel trigger and given back."""

    def __init__(self, root: str, name: str):
        self.name = name
        self.path = os.path.join(root, name)
        self.max = int(self._read("max_brightness"))
        if self.max <= 0:
            raise ValueError("LED %s: max_brightness is %d" % (self.path, self.max))
        self.saved_trigger: Optional[str] = None
        self.saved_brightness = 0
        self.saved_delays: Optional[Tuple[str, str]] = None
        self.triggers: List[str] = []
        self.shown: Optional[str] = None

    def _read(self, attr: str) -> str:
        with open(os.path.join(self.path, attr)) as f:
            return f.read().strip()

    def _write(self, attr: str, value) -> None:
        with open(os.path.join(self.path, attr), "w") as f:
            f.write("%s\n" % value)

    def _delays(self, on, off) -> None:
        """The timer trigger's delays; its files appear with it, root's: an unprivileged daemon (after
        the drop) can't write them, and the trigger blinks at its default 500/500 ms instead."""
        try:
            self._write("delay_on", on)
            self._write("delay_off", off)
        except PermissionError:
            pass

    def paths(self) -> List[str]:
        """The attributes written after start (made the daemon's user's before it drops root)."""
        return [os.path.join(self.path, a) for a in ("trigger", "brightness")]

    def take(self) -> None:
        """Remember trigger and brightness, then drive the LED ourselves (trigger none, off)."""
        self.saved_trigger, self.triggers = parse_trigger(self._read("trigger"))
        self.saved_brightness = int(self._read("brightness") or 0)
        if self.saved_trigger == "timer":
            try:
                self.saved_delays = (self._read("delay_on"), self._read("delay_off"))
            except OSError:
                self.saved_delays = None
        self._write("trigger", "none")
        self._write("brightness", 0)
        self.shown = OFF

    def show(self, what: str) -> None:
        """OFF, ON or BLINK (the kernel's timer trigger; steady on where there is none)."""
        if what == self.shown:
            return
        if what == BLINK and "timer" in self.triggers:
            self._write("trigger", "timer")
            self._delays(*RINGING_BLINK)
        else:
            if self.shown == BLINK:
                self._write("trigger", "none")
            self._write("brightness", 0 if what == OFF else self.max)
        self.shown = what

    def restore(self) -> None:
        """Give the LED back: the trigger it had, or its brightness when it had none."""
        if self.saved_trigger in (None, "none"):
            self._write("trigger", "none")
            self._write("brightness", self.saved_brightness)
        else:
            # not brightness: writing 0 to it would remove the trigger again
            self._write("trigger", self.saved_trigger)
            if self.saved_trigger == "timer" and self.saved_delays:
                self._delays(*self.saved_delays)
        self.shown = None


def engine_state(engine, now: float) -> Tuple[str, str]:
    """(registered, call) from an alg.core Engine: any live registration; a confirmed or ringing call."""
    registered = ON if any(r.expires_at > now for r in engine.registrations.all()) else OFF
    states = [c.state for c in engine.dialogs.all()]
    if CONFIRMED in states:
        call = ON
    elif states:
        call = BLINK
    else:
        call = OFF
    return registered, call


class StatusLeds:
    """The daemon's LEDs: start() takes them over, update() shows the state, stop() gives them back."""

    def __init__(self, config: Optional[LedConfig] = None):
        self.config = config or LedConfig()
        self.leds: Dict[str, Led] = {}
        self._told: set = set()
        self._nft_failures: Optional[int] = None
        self._nft_rose_at: Optional[float] = None
        self._error = OFF

    def _once(self, key: str, level: int, msg: str, *args) -> None:
        if key not in self._told:
            self._told.add(key)
            log.log(level, msg, *args)

    def start(self) -> None:
        cfg = self.config
        if not cfg.enabled:
            return
        if not os.path.isdir(cfg.root):
            self._once("root", logging.WARNING, "status LEDs: no %s here; LEDs not used", cfg.root)
            return
        found = probe(cfg.root, cfg.names)
        for role in ROLES:
            want = cfg.names[role]
            if not want:
                continue
            name = found.get(role)
            if name is None:
                self._once("auto:" + role, logging.INFO, "status LEDs: no LED found for %s in %s (auto)",
                           role, cfg.root)
                continue
            try:
                led = Led(cfg.root, name)
                led.take()
            except (OSError, ValueError) as e:
                self._once("led:" + name, logging.WARNING, "status LEDs: LED %r for %s not usable: %s",
                           name, role, e)
                continue
            self.leds[role] = led
            log.info("status LEDs: %s on %s (was trigger %s)", role, name, led.saved_trigger)

    def update(self, engine, wan_ip: Optional[str], nft_failures: int, now: float) -> None:
        """Once a second: the engine's state and the daemon's health (wan_ip: the WAN's address now)."""
        if not self.leds:
            return
        self._error = self.error_state(wan_ip, nft_failures, now)
        self.refresh(engine, now)

    def refresh(self, engine, now: float) -> None:
        """After packets: registrations and calls only, health as last seen; cheap when nothing changed."""
        if not self.leds:
            return
        registered, call = engine_state(engine, now)
        self.show(LedState(registered, call, self._error))

    def error_state(self, wan_ip: Optional[str], nft_failures: int, now: float) -> str:
        """ON when the WAN has no address, or nft operations failed within ERROR_HOLD seconds."""
        if self._nft_failures is not None and nft_failures > self._nft_failures:
            self._nft_rose_at = now
        self._nft_failures = nft_failures
        rising = self._nft_rose_at is not None and now - self._nft_rose_at < ERROR_HOLD
        return ON if wan_ip is None or rising else OFF

    def show(self, state: LedState) -> None:
        for role in ROLES:
            led = self.leds.get(role)
            if led is None:
                continue
            try:
                led.show(getattr(state, role))
            except OSError as e:          # e.g. a USB LED unplugged: drop it, keep running
                self._once("write:" + led.name, logging.WARNING, "status LEDs: %s (%s) dropped: %s",
                           led.name, role, e)
                del self.leds[role]

    def stop(self) -> None:
        """Put every LED back as it was; never raises."""
        for role, led in list(self.leds.items()):
            try:
                led.restore()
            except OSError as e:
                log.warning("status LEDs: could not restore %s: %s", led.name, e)
        self.leds.clear()

    def reconfigure(self, config: LedConfig) -> "StatusLeds":
        """After a reload: the same object when nothing changed, else a fresh one, started."""
        if config == self.config:
            return self
        self.stop()
        fresh = StatusLeds(config)
        fresh.start()
        return fresh

    def paths(self) -> List[str]:
        return [p for led in self.leds.values() for p in led.paths()]

    def describe(self) -> Dict[str, str]:
        """role -> LED name, for status output."""
        return {role: led.name for role, led in self.leds.items()}
