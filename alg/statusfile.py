"""The daemon's side of `sipalg status`: status.json published cheaply, and never fatally.

The daemon calls publish() on every turn of its loop with a key made of cheap things
(counters, sizes, the next timer): the document is built only when the key moved, at most
every MIN_INTERVAL s, and written only when its text changed, so an idle router rewrites
nothing but the HEARTBEAT that lets readers tell a live daemon from a hung one.  Times are
wall-clock seconds (expiries absolute), mapped from the daemon's monotonic clock by one
offset, taken again when the wall clock is set (NTP at boot).

A write that fails (ENOSPC on a full tmpfs, EROFS, EACCES, a state directory gone) is a
warning, at most once a minute for the same reason: the daemon keeps running and keeps its bindings, the last
complete file stays for the readers (it goes stale, and they say so), the write is retried
every RETRY s and the log says when it works again.  The file is replaced by rename, so a
reader never sees half of one.  See alg/status.py for the format.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable, Hashable

from alg.status import FILE, HEARTBEAT, header

log = logging.getLogger("sipalg")

MIN_INTERVAL = 0.5          # seconds between two builds while things keep changing
RETRY = 5.0                 # seconds between attempts while writing fails
WARN_EVERY = 60.0           # seconds between two warnings about it
TEXT_LIMIT = 128            # characters kept of a string off the wire (AOR, Call-ID)


def wire_text(raw: bytes) -> str:
    """Bytes off the wire as status text, cut at TEXT_LIMIT so no message can make the file big."""
    text = raw.decode(errors="replace")
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 3] + "..."


class StatusFile:
    def __init__(self, state_dir: str, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time):
        """clock: the daemon's monotonic clock, which `now` comes from; wall_clock: the one readers have."""
        self.state_dir = state_dir
        self.clock = clock
        self.wall_clock = wall_clock
        self.started = clock()
        self.offset = wall_clock() - self.started
        self.writes = 0                 # files written, and attempts that failed (tests, benchmarks)
        self.failures = 0
        self._key: Hashable = None      # the key of what the file shows (None: build at the next chance)
        self._body = ""                 # the document's text as last written
        self._built = -HEARTBEAT        # monotonic times: the last build, the last file written
        self._written = -HEARTBEAT
        self._pending = False           # changed, but built less than MIN_INTERVAL ago
        self._failing = False
        self._warned = -WARN_EVERY
        self._warning = ""              # what the last warning said: a new reason is said at once

    @property
    def path(self) -> str:
        return os.path.join(self.state_dir, FILE)

    def wall(self, t: float) -> int:
        """A time of the daemon's monotonic clock in wall-clock seconds."""
        return int(round(t + self.offset))

    def touch(self) -> None:
        """What the status shows changed in a way the key doesn't see: build at the next chance."""
        self._key = None

    def wait(self, now: float) -> float:
        """Seconds until publish() has something to do (the loop's select may sleep no longer)."""
        if self._pending:
            return max(0.0, self._built + MIN_INTERVAL - now)
        if self._failing:
            return max(0.0, self._built + RETRY - now)
        return max(0.0, self._written + HEARTBEAT - now)

    def publish(self, now: float, key: Hashable, build: Callable[[float], dict]) -> None:
        """Write the status if it changed (build(now) makes the document); cheap when it didn't."""
        offset = self.wall_clock() - self.clock()   # not `now`: a long turn of the loop is no clock step
        if abs(offset - self.offset) > 1.0:         # the wall clock was set: every absolute time moves
            self.offset = offset
            self._key = None
        since = now - self._built
        if self._failing:
            if since < RETRY:
                return
        elif key == self._key:
            if now - self._written < HEARTBEAT:
                return
        elif since < MIN_INTERVAL:
            self._pending = True
            return
        self._built, self._pending = now, False
        try:
            body = json.dumps(build(now), separators=(",", ":"))
        except Exception:                           # a bug here must not stop the daemon
            self._fail(now, "could not build the status", exc_info=True)
            return
        if body == self._body and not self._failing and now - self._written < HEARTBEAT:
            self._key = key                         # the key moved, the document didn't
            return
        text = header(os.getpid(), self.wall(self.clock())) + body[1:] + "\n"
        try:
            self._replace(text.encode())
        except OSError as e:
            self._fail(now, "status not written to %s: %s" % (self.path, e.strerror or e))
            return
        if self._failing:
            log.info("status written to %s again", self.path)
        self._failing = False
        self._key, self._body, self._written = key, body, now
        self.writes += 1

    def remove(self) -> None:
        for p in (self.path, self.path + ".tmp"):
            try:
                os.unlink(p)
            except OSError:
                pass

    def relocate(self, state_dir: str) -> None:
        """A new state_dir (reload): the old file goes, the next publish writes the new one."""
        if state_dir != self.state_dir:
            self.remove()
            self.state_dir = state_dir
            self._key, self._body = None, ""

    def _replace(self, data: bytes) -> None:
        tmp = self.path + ".tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:                   # first start, or the directory was removed
            os.makedirs(self.state_dir, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)                      # a partial file would only hold space
            except OSError:
                pass
            raise

    def _fail(self, now: float, what: str, exc_info: bool = False) -> None:
        self.failures += 1
        self._failing = True
        if now - self._warned >= WARN_EVERY or what != self._warning:
            self._warned, self._warning = now, what
            log.warning("%s (running on; retried every %d s, said at most once a minute)", what, RETRY,
                        exc_info=exc_info)
