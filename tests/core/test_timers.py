from alg.core.timers import Timers


def test_order_and_due():
    t = Timers()
    t.schedule("c", 3.0)
    t.schedule("a", 1.0)
    t.schedule("b", 2.0)
    assert t.next_deadline() == 1.0
    assert t.due(2.5) == ["a", "b"]
    assert len(t) == 1 and t.deadline("c") == 3.0
    assert t.due(2.9) == []
    assert t.due(3.0) == ["c"]
    assert t.next_deadline() is None


def test_reschedule_and_cancel():
    t = Timers()
    t.schedule(("b", 1), 5.0)
    t.schedule(("b", 1), 10.0)
    t.schedule(("b", 2), 7.0)
    t.cancel(("b", 2))
    assert t.next_deadline() == 10.0
    assert t.due(9.0) == []
    assert t.due(10.0) == [("b", 1)]
    t.schedule("x", 4.0)
    t.schedule("x", 1.0)          # earlier reschedule too
    assert t.due(1.0) == ["x"] and t.due(100.0) == []


def test_many_against_model():
    t = Timers()
    model = {}
    seed = 12345
    for i in range(10000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        key = seed % 500
        op = (seed >> 8) % 10
        when = float((seed >> 4) % 1000)
        if op < 7:
            t.schedule(key, when)
            model[key] = when
        elif op < 9:
            t.cancel(key)
            model.pop(key, None)
        else:
            now = float((seed >> 3) % 1000)
            got = t.due(now)
            want = sorted([k for k in model if model[k] <= now], key=lambda k: model[k])
            assert sorted(got) == sorted(want)
            whens = [model[k] for k in got]
            assert whens == sorted(whens)
            for k in want:
                del model[k]
        assert len(t) == len(model)
    assert len(t._heap) <= len(t._live) + (len(t._live) >> 1) + 65
    nd = t.next_deadline()
    assert nd == (min(model.values()) if model else None)


def test_due_hands_out_at_most_limit_and_keeps_the_rest():
    t = Timers()
    for i in range(10):
        t.schedule(("k", i), float(i))
    first = t.due(100.0, 4)
    assert first == [("k", 0), ("k", 1), ("k", 2), ("k", 3)]
    assert t.next_deadline() == 4.0 and len(t) == 6
    assert t.due(100.0) == [("k", i) for i in range(4, 10)]


def test_every_kind_of_engine_key_compares_with_every_other_at_one_deadline():
    """Entries carry no sequence number, so keys due at the same moment are compared: the
    engine's keys of every kind (binding, port rest, transaction, pending REGISTER,
    registration, call) must order against each other without a TypeError."""
    from alg.core.config import Config
    from alg.core.engine import Engine, OUT, IN
    from sipmsgs import PHONE, SERVER, WAN, WAN_IP, invite, register, response
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999), port_reuse_delay=30))
    e.handle(OUT, ("10.0.0.6", 5080), SERVER, b"\r\n\r\n", 0.0)                      # idle binding ...
    e.expire(181.0)                                                                 # ... closed: its port rests
    e.handle(OUT, PHONE, SERVER, register(), 182.0)
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1"
    e.handle(IN, SERVER, WAN, response(200, "OK", via, "reg1@10.0.0.2", 1, "REGISTER",
                                       contact="<sip:alice@203.0.113.1:5060>;expires=600"), 182.1)
    e.handle(OUT, PHONE, SERVER, register(cseq=2, branch="z9hG4bKreg2"), 183.0)        # pending
    e.handle(OUT, PHONE, SERVER, invite(), 184.0)                                    # a call
    e.handle(OUT, ("10.0.0.5", 5070), SERVER, register(ip="10.0.0.5", port=5070, call_id="r5", branch="z9hG4bKr5")
             .replace(b"10.0.0.5:5070;branch", b"10.0.0.5:05070;branch"), 185.0)  # a sent-by kept
    keys = list(e.timers._live)
    kinds = sorted(set(k[0] for k in keys))
    assert kinds == ["binding", "call", "pending-register", "port-rest", "registration", "transaction"], kinds
    t = Timers()
    for k in keys + keys[::-1]:
        t.schedule(k, 7.0)
    assert sorted(t.due(7.0), key=repr) == sorted(keys, key=repr)
