"""The daemon's status writer (alg/statusfile.py) on its own, on a clock the test moves: written only
when the document changed, at most every MIN_INTERVAL, a heartbeat when nothing did, absolute times
moved when the wall clock is set, and a write that fails a warning that is retried.  The lab has the
same with the daemon and a real full or read-only tmpfs (tests/lab/test_status.py)."""
import json
import logging
import os

from alg import status
from alg.statusfile import HEARTBEAT, MIN_INTERVAL, RETRY, TEXT_LIMIT, StatusFile, wire_text


class Clocks:
    """A monotonic clock and a wall clock, moved by the test (together, unless the wall clock is set)."""

    def __init__(self):
        self.mono, self.wall = 1000.0, 1800000000.0

    def tick(self, seconds):
        self.mono += seconds
        self.wall += seconds


def _writer(tmp_path):
    c = Clocks()
    return c, StatusFile(str(tmp_path / "state"), lambda: c.mono, lambda: c.wall)


def _file(pub):
    with open(pub.path) as f:
        head = f.readline()
        return head, json.loads(head + f.read())


def test_written_when_the_document_changes_and_not_otherwise(tmp_path):
    c, pub = _writer(tmp_path)
    doc = {"counters": {"queued": 1}, "expires": pub.wall(c.mono + 600)}
    pub.publish(c.mono, 1, lambda now: doc)
    head, st = _file(pub)
    assert head == status.header(os.getpid(), 1800000000)
    assert st["pid"] == os.getpid() and st["fresh_until"] == st["written"] + status.STALE
    assert st["expires"] == 1800000600 and pub.writes == 1
    built = []

    def build(now):
        built.append(now)
        return doc
    # the same key: not even built, however often it is asked
    for _ in range(20):
        c.tick(1)
        pub.publish(c.mono, 1, build)
    assert built == [] and pub.writes == 1
    # a new key with the same document: built, not written
    pub.publish(c.mono, 2, build)
    assert len(built) == 1 and pub.writes == 1
    # a change right after a build waits MIN_INTERVAL, and says how long to the loop
    doc = dict(doc, counters={"queued": 2})
    c.tick(0.1)
    pub.publish(c.mono, 3, lambda now: doc)
    assert pub.writes == 1 and abs(pub.wait(c.mono) - (MIN_INTERVAL - 0.1)) < 1e-6
    c.tick(MIN_INTERVAL)
    pub.publish(c.mono, 3, lambda now: doc)
    assert pub.writes == 2 and _file(pub)[1]["counters"] == {"queued": 2}


def test_heartbeat_rewrites_an_unchanged_document(tmp_path):
    c, pub = _writer(tmp_path)
    doc = {"counters": {"queued": 1}}
    pub.publish(c.mono, 1, lambda now: doc)
    first = _file(pub)[1]
    c.tick(HEARTBEAT - 1)
    pub.publish(c.mono, 1, lambda now: doc)
    assert pub.writes == 1
    c.tick(1)
    pub.publish(c.mono, 1, lambda now: doc)
    again = _file(pub)[1]
    assert pub.writes == 2 and again["written"] == first["written"] + HEARTBEAT
    assert {k: v for k, v in again.items() if k not in ("written", "fresh_until")} == \
        {k: v for k, v in first.items() if k not in ("written", "fresh_until")}


def test_a_wall_clock_step_moves_the_absolute_times(tmp_path):
    """NTP sets the clock after boot: expiries computed from the monotonic clock move with it."""
    c, pub = _writer(tmp_path)
    deadline = c.mono + 600
    pub.publish(c.mono, 1, lambda now: {"expires": pub.wall(deadline)})
    assert _file(pub)[1]["expires"] == 1800000600
    c.wall += 86400                          # the clock is set a day on; nothing else changed
    c.tick(1)
    pub.publish(c.mono, 1, lambda now: {"expires": pub.wall(deadline)})
    st = _file(pub)[1]
    assert st["expires"] == 1800000600 + 86400 and st["written"] == 1800000001 + 86400
    # a long turn of the loop (now read long before publish) is no step
    c.tick(5)
    pub.publish(c.mono - 3, 1, lambda now: {"expires": pub.wall(deadline)})
    assert pub.writes == 2


def test_a_write_that_fails_is_a_warning_retried_until_it_works(tmp_path, caplog):
    """A state dir that can't be made (a file where its parent should be: ENOTDIR, here without root's
    privileges mattering); the warning comes once a minute per reason, the tries every RETRY s."""
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    c = Clocks()
    pub = StatusFile(str(blocker / "sipalg"), lambda: c.mono, lambda: c.wall)
    caplog.set_level(logging.INFO, logger="sipalg")
    for i in range(int(2 * RETRY)):              # 10 s of turns, a change at each
        pub.publish(c.mono, i, lambda now: {"n": 1})
        c.tick(1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "status not written to %s" % pub.path in warnings[0].getMessage()
    assert pub.failures == 2 and pub.writes == 0                  # tried at 0 s and 5 s
    assert pub.wait(c.mono - 4) == RETRY - 1                      # a second after the last try
    blocker.unlink()                             # the directory can be made now
    c.tick(RETRY)
    pub.publish(c.mono, 99, lambda now: {"n": 1})
    assert pub.writes == 1 and _file(pub)[1]["n"] == 1
    assert any("status written to %s again" % pub.path in r.getMessage() for r in caplog.records)
    assert not os.path.exists(pub.path + ".tmp")


def test_a_document_that_fails_to_build_is_a_warning_too(tmp_path, caplog):
    c, pub = _writer(tmp_path)
    caplog.set_level(logging.WARNING, logger="sipalg")

    def broken(now):
        raise KeyError("bug")
    pub.publish(c.mono, 1, broken)
    assert pub.failures == 1 and not os.path.exists(pub.path)
    assert "could not build the status" in caplog.text and "KeyError" in caplog.text
    c.tick(RETRY)
    pub.publish(c.mono, 1, lambda now: {"n": 2})
    assert _file(pub)[1]["n"] == 2


def test_relocate_and_remove(tmp_path):
    c, pub = _writer(tmp_path)
    pub.publish(c.mono, 1, lambda now: {"n": 1})
    old = pub.path
    pub.relocate(str(tmp_path / "elsewhere"))
    assert not os.path.exists(old)
    c.tick(1)
    pub.publish(c.mono, 1, lambda now: {"n": 1})             # the same key: written at the new place
    assert _file(pub)[1]["n"] == 1 and pub.path.startswith(str(tmp_path / "elsewhere"))
    pub.remove()
    assert os.listdir(str(tmp_path / "elsewhere")) == []


def test_wire_text_is_cut():
    assert wire_text(b"sip:alice@example.com") == "sip:alice@example.com"
    long = wire_text(b"x" * 1000)
    assert len(long) == TEXT_LIMIT and long.endswith("...")
    assert wire_text(b"\xff<b>") == "\ufffd<b>"


def test_the_daemons_document_lists_the_first_entries_and_counts_them_all(tmp_path):
    """Thousands of bindings make a file of tens of kB, not megabytes rewritten each second (64k
    bindings once made 6.9 MB): each list holds its first LIST_LIMIT entries, totals count all."""
    from bench.status_bench import fill, stand_in
    from alg import daemon
    e = fill(1000, 100)                                  # 1,000 registrations, 100 calls with media
    d = stand_in(e, str(tmp_path))
    doc = daemon.Daemon.status(d, 1.0)
    assert doc["totals"]["registrations"] == 1000 and doc["totals"]["calls"] == 100
    assert doc["totals"]["bindings"] == 1000 and doc["totals"]["pinholes"] == 200
    assert len(doc["registrations"]) == len(doc["calls"]) == status.LIST_LIMIT
    assert sorted(set(b["kind"] for b in doc["bindings"])) == ["rtcp", "rtp", "sip"]
    assert [b["kind"] for b in doc["bindings"]].count("sip") == status.LIST_LIMIT
    assert len(json.dumps(doc)) < 40000
