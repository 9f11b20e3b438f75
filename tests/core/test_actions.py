"""Which of a message's actions its verdict waits for (actions.split_at_verdict)."""
from alg.core.actions import Action, OPEN, REFRESH, MOVE, CLOSE, SEND, split_at_verdict
from alg.core.bindings import Binding


FAR = ("203.0.113.10", 20000)


def _b(lan_port, wan_port, kind="rtp", remote=FAR):
    return Binding(("10.0.0.2", lan_port), ("203.0.113.1", wan_port), kind, remote=remote)


def kinds(actions):
    return [(a.kind, a.binding.lan[1] if a.binding else None) for a in actions]


def test_refreshes_and_closes_follow_the_verdict_opens_and_sends_do_not():
    acts = [Action(REFRESH, _b(5060, 5060, "sip")), Action(OPEN, _b(6000, 6000)), Action(CLOSE, _b(7000, 7000)),
            Action(OPEN, _b(5062, 5062, "sip", remote=None)),
            Action(SEND, src=("203.0.113.1", 5060), dst=("203.0.113.10", 5060), payload=b"\r\n")]
    before, after = split_at_verdict(acts)
    # a media binding with a far end: the phone may send at once; a signalling one: the datagram's own
    assert kinds(before) == [("open", 6000), ("open", 5062), ("send", None)]
    assert kinds(after) == [("refresh", 5060), ("close", 7000)]


def test_an_offers_media_follows_the_verdict_the_answers_move_of_its_gate_does_not():
    # an INVITE's offer: its media admits nobody until the answer, and the phone sends nothing before it
    offer = [Action(OPEN, _b(40000, 40000, remote=None)), Action(OPEN, _b(40001, 40001, "rtcp", remote=None))]
    assert split_at_verdict(offer) == ([], offer)
    # the answer names the far end, which may send media as soon as it sent the answer (RFC 3264 6):
    # the gate opens before the answer crosses, and its refresh keeps its place after the move
    rtp, was = _b(40000, 40000), _b(40000, 40000, remote=None)
    answer = [Action(MOVE, rtp, old=was), Action(REFRESH, rtp)]
    assert split_at_verdict(answer) == (answer, [])
    # a signalling binding's move (a new peer may send SIP at once) stays before
    sip = _b(5060, 5060, "sip")
    assert kinds(split_at_verdict([Action(MOVE, sip, old=sip)])[0]) == [("move", 5060)]
    # media_from any: the gate is open to anyone from the start
    anyone = _b(40002, 40002, remote=("0.0.0.0", 0))
    assert kinds(split_at_verdict([Action(OPEN, anyone)])[0]) == [("open", 40002)]


def test_a_binding_an_action_kept_before_also_touches_keeps_its_order():
    # the close shares its LAN address with the open: it stays before, ahead of the open
    acts = [Action(CLOSE, _b(6000, 6000)), Action(OPEN, _b(6000, 6002)), Action(REFRESH, _b(6100, 6000))]
    before, after = split_at_verdict(acts)
    assert kinds(before) == [("close", 6000), ("open", 6000)]
    assert kinds(after) == [("refresh", 6100)]        # its WAN port's close went first anyway
    # a refresh ahead of a move of the same binding stays ahead of it
    b = _b(6200, 6200, "sip")
    before, after = split_at_verdict([Action(REFRESH, b), Action(MOVE, b, old=b)])
    assert kinds(before) == [("refresh", 6200), ("move", 6200)] and after == []
    # the close of the WAN port an open kept before takes stays ahead of it; the offer's media open
    # on the closed binding's LAN port may still follow: everything before goes ahead of it anyway
    gone, offer = _b(6300, 6302), _b(6300, 6300, remote=None)
    before, after = split_at_verdict([Action(CLOSE, gone), Action(OPEN, offer), Action(OPEN, _b(6400, 6302))])
    assert kinds(before) == [("close", 6300), ("open", 6400)] and kinds(after) == [("open", 6300)]
    # but an offer's open on a LAN port a kept-before action touches later stays before, in order
    before, after = split_at_verdict([Action(OPEN, offer), Action(OPEN, _b(6300, 6304))])
    assert kinds(before) == [("open", 6300), ("open", 6300)] and after == []


def test_nothing_to_split():
    assert split_at_verdict([]) == ([], [])
