"""Call state: media pinholes follow offer/answer and close when the call ends."""
from alg.core.engine import Engine, OUT, IN
from alg.core.config import Config
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, invite, register, response, crlf, sdp, with_body, kinds as _kinds

VIA_INV = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
REMOTE_SDP = sdp(ip="203.0.113.10", port=20000)


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999),
                         early_media_timeout=180, call_timeout=7200))


def kinds(res):
    return _kinds(res.actions)


def pinholes(e):
    return sorted((b.kind, b.lan, b.wan, b.remote) for b in e.bindings() if b.kind != "sip")


def _answer(code=200, body=REMOTE_SDP, tag="b1", cseq=1):
    return response(code, "OK", VIA_INV, "call1@10.0.0.2", cseq, "INVITE", to_tag=tag, body=body,
                    contact="<sip:bob@203.0.113.10>")


def _bye(frm_phone=True):
    if frm_phone:
        return crlf("BYE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbye\n"
                    "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
                    "Call-ID: call1@10.0.0.2\nCSeq: 2 BYE\nContent-Length: 0\n\n")
    return crlf("BYE sip:alice@203.0.113.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKb2\n"
                "From: <sip:bob@203.0.113.10>;tag=b1\nTo: <sip:alice@203.0.113.1>;tag=a1\n"
                "Call-ID: call1@10.0.0.2\nCSeq: 9 BYE\nContent-Length: 0\n\n")


def test_outgoing_call_opens_then_narrows_then_closes():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    assert pinholes(e) == [("rtcp", ("10.0.0.2", 6001), (WAN_IP, 6001), None),
                           ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), None)]
    r = e.handle(IN, SERVER, WAN, _answer(), 1.0)
    assert sorted(kinds(r)).count("move rtp") == 1 and kinds(r).count("move rtcp") == 1
    assert pinholes(e) == [("rtcp", ("10.0.0.2", 6001), (WAN_IP, 6001), ("203.0.113.10", 20001)),
                           ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.10", 20000))]
    rtp = e.lookup_lan(("10.0.0.2", 6000))
    assert rtp.expires == 1.0 + 7200
    r = e.handle(OUT, PHONE, SERVER, _bye(), 50.0)
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"]
    assert pinholes(e) == []
    assert not e.dialogs


def test_bye_from_far_end_closes():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    e.handle(IN, SERVER, WAN, _answer(), 1.0)
    r = e.handle(IN, SERVER, WAN, _bye(frm_phone=False), 5.0)
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"] and pinholes(e) == []


def test_error_response_closes_early_call():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    r = e.handle(IN, SERVER, WAN, response(486, "Busy Here", VIA_INV, "call1@10.0.0.2", 1, "INVITE"), 1.0)
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"] and pinholes(e) == []


def test_cancel_closes_early_call():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    cancel = crlf("CANCEL sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinv1\n"
                  "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>\n"
                  "Call-ID: call1@10.0.0.2\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
    r = e.handle(OUT, PHONE, SERVER, cancel, 1.0)
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"]


def test_early_media_183_sets_remote():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    r = e.handle(IN, SERVER, WAN, _answer(code=183, body=sdp(ip="203.0.113.20", port=30000)), 1.0)
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.20", 30000)) in pinholes(e)
    # forked 2xx from another branch with its own To-tag and media wins
    e.handle(IN, SERVER, WAN, _answer(body=sdp(ip="203.0.113.30", port=40000), tag="other"), 2.0)
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.30", 40000)) in pinholes(e)
    assert e.dialogs.get(b"call1@10.0.0.2", "10.0.0.2").tags == [b"other"]


def test_early_call_expires_without_answer():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    acts = e.expire(181.0)
    assert sorted(_kinds(acts.actions)) == ["close rtcp", "close rtp", "close sip"]


def test_reinvite_moves_port_and_hold_keeps_pinholes():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    e.handle(IN, SERVER, WAN, _answer(), 1.0)
    re = invite(rtp=6010, cseq=2, branch="z9hG4bKre", to_tag="b1")
    r = e.handle(OUT, PHONE, SERVER, re, 10.0)
    assert b"m=audio 6010 " in r.payload
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"] and sorted(k for k in kinds(r) if k.startswith("open")) == ["open rtcp", "open rtp"]
    # the far end's address is already known: the new pinholes are narrow from the start
    assert ("rtp", ("10.0.0.2", 6010), (WAN_IP, 6010), ("203.0.113.10", 20000)) in pinholes(e)
    hold = invite(rtp=6010, cseq=3, branch="z9hG4bKho", to_tag="b1", extra_sdp="a=sendonly\n")
    r = e.handle(OUT, PHONE, SERVER, hold, 20.0)
    assert not [k for k in kinds(r) if k.startswith("close")]
    assert len(pinholes(e)) == 2
    # the far end answers hold with c=0.0.0.0: pinholes keep their remote
    e.handle(IN, SERVER, WAN, _answer(body=sdp(ip="0.0.0.0", port=20000), cseq=3), 21.0)
    assert ("rtp", ("10.0.0.2", 6010), (WAN_IP, 6010), ("203.0.113.10", 20000)) in pinholes(e)


def test_incoming_call_offer_in_invite():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)
    inv = with_body("INVITE sip:alice@203.0.113.1:5060 SIP/2.0\n"
                    "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKsrv\n"
                    "From: <sip:carol@203.0.113.10>;tag=c1\nTo: <sip:alice@203.0.113.10>\n"
                    "Call-ID: in1\nCSeq: 1 INVITE\nContact: <sip:carol@203.0.113.10>\n"
                    "Content-Type: application/sdp\n", REMOTE_SDP)
    r = e.handle(IN, SERVER, WAN, inv, 1.0)
    assert r.payload.startswith(b"INVITE sip:alice@10.0.0.2:5060 ")
    assert pinholes(e) == []
    ok = with_body("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKsrv\n"
                   "From: <sip:carol@203.0.113.10>;tag=c1\nTo: <sip:alice@203.0.113.10>;tag=a9\n"
                   "Call-ID: in1\nCSeq: 1 INVITE\nContact: <sip:alice@10.0.0.2:5060>\n"
                   "Content-Type: application/sdp\n", sdp())
    r = e.handle(OUT, PHONE, SERVER, ok, 2.0)
    assert b"Contact: <sip:alice@203.0.113.1:5060>\r\n" in r.payload
    assert b"c=IN IP4 203.0.113.1\r\n" in r.payload
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.10", 20000)) in pinholes(e)
    assert e.lookup_lan(("10.0.0.2", 6000)).expires == 2.0 + 7200


def test_late_offer_answer_in_ack():
    e = engine()
    inv = invite()
    head, _, _ = inv.partition(b"Content-Type:")
    no_sdp = head + b"Content-Length: 0\r\n\r\n"
    e.handle(OUT, PHONE, SERVER, no_sdp, 0.0)
    assert pinholes(e) == []
    e.handle(IN, SERVER, WAN, _answer(), 1.0)      # offer in 2xx
    ack = with_body("ACK sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKack\n"
                    "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
                    "Call-ID: call1@10.0.0.2\nCSeq: 1 ACK\nContent-Type: application/sdp\n", sdp())
    r = e.handle(OUT, PHONE, SERVER, ack, 1.5)
    assert b"c=IN IP4 203.0.113.1\r\n" in r.payload
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.10", 20000)) in pinholes(e)


def test_update_changes_remote():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    e.handle(IN, SERVER, WAN, _answer(), 1.0)
    upd = with_body("UPDATE sip:alice@203.0.113.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKu\n"
                    "From: <sip:bob@203.0.113.10>;tag=b1\nTo: <sip:alice@203.0.113.1>;tag=a1\n"
                    "Call-ID: call1@10.0.0.2\nCSeq: 5 UPDATE\nContent-Type: application/sdp\n",
                    sdp(ip="203.0.113.40", port=22000))
    r = e.handle(IN, SERVER, WAN, upd, 30.0)
    assert sorted(kinds(r)).count("move rtp") == 1 and kinds(r).count("move rtcp") == 1
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.40", 22000)) in pinholes(e)


def test_pinholes_picked_up_after_a_restart_close_with_the_bye():
    from alg.core.bindings import Binding
    from alg.core.dialogs import call_tag
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    e.handle(IN, SERVER, WAN, _answer(), 1.0)
    held = [b.copy() for b in e.bindings() if b.kind != "sip"]
    assert {b.tag for b in held} == {call_tag(b"call1@10.0.0.2", "10.0.0.2")}
    # a new daemon finds them in the kernel (expires: seconds left) and knows nothing else
    fresh = engine()
    for b in held:
        b.expires = 10.0 + 7000
        fresh.restore(b)
    assert not fresh.dialogs and len(pinholes(fresh)) == 2
    r = fresh.handle(OUT, PHONE, SERVER, _bye(), 20.0)
    assert sorted(k for k in kinds(r) if k.startswith("close")) == ["close rtcp", "close rtp"]
    assert pinholes(fresh) == [] and not fresh.dialogs


def test_a_phones_answer_to_an_invite_never_seen_is_still_rewritten():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)            # the phone's binding (after a restart)
    ok = with_body("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKlost\n"
                   "From: <sip:bob@203.0.113.10>;tag=b1\nTo: <sip:alice@203.0.113.1>;tag=a9\n"
                   "Call-ID: lost1\nCSeq: 7 INVITE\nContact: <sip:alice@10.0.0.2:5060>\n"
                   "Content-Type: application/sdp\n", sdp())
    r = e.handle(OUT, PHONE, SERVER, ok, 5.0)
    assert b"c=IN IP4 203.0.113.1\r\n" in r.payload and b"10.0.0.2" not in r.payload
    assert ("rtp", ("10.0.0.2", 6000), (WAN_IP, 6000), ("203.0.113.10", 0)) in pinholes(e)
    assert e.dialogs.get(b"lost1", "10.0.0.2").state == "confirmed"
