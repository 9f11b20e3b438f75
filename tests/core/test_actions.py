"""Which of a message's actions its verdict waits for (actions.split_at_verdict)."""
from alg.core.actions import Action, OPEN, REFRESH, MOVE, CLOSE, SEND, split_at_verdict
from alg.core.bindings import Binding


def _b(lan_port, wan_port, kind="rtp"):
    return Binding(("10.0.0.2", lan_port), ("203.0.113.1", wan_port), kind)


def kinds(actions):
    return [(a.kind, a.binding.lan[1] if a.binding else None) for a in actions]


def test_refreshes_and_closes_follow_the_verdict_opens_moves_and_sends_do_not():
    acts = [Action(REFRESH, _b(5060, 5060, "sip")), Action(OPEN, _b(6000, 6000)), Action(CLOSE, _b(7000, 7000)),
            Action(MOVE, _b(8000, 8000), old=_b(8000, 8000)),
            Action(SEND, src=("203.0.113.1", 5060), dst=("203.0.113.10", 5060), payload=b"\r\n")]
    before, after = split_at_verdict(acts)
    assert kinds(before) == [("open", 6000), ("move", 8000), ("send", None)]
    assert kinds(after) == [("refresh", 5060), ("close", 7000)]


def test_a_binding_an_action_kept_before_also_touches_keeps_its_order():
    # the close shares its LAN address with the open: it stays before, ahead of the open
    acts = [Action(CLOSE, _b(6000, 6000)), Action(OPEN, _b(6000, 6002)), Action(REFRESH, _b(6100, 6000))]
    before, after = split_at_verdict(acts)
    assert kinds(before) == [("close", 6000), ("open", 6000)]
    assert kinds(after) == [("refresh", 6100)]        # its WAN port's close went first anyway
    # a refresh ahead of a move of the same binding stays ahead of it
    b = _b(6200, 6200)
    before, after = split_at_verdict([Action(REFRESH, b), Action(MOVE, b, old=b)])
    assert kinds(before) == [("refresh", 6200), ("move", 6200)] and after == []


def test_nothing_to_split():
    assert split_at_verdict([]) == ([], [])
