"""INVITE dialogs: which media bindings a call holds, and toward whom.

One Call per (Call-ID, LAN device): a call between two phones behind the
same router through a proxy crosses the router twice with one Call-ID.
Media legs are indexed by the position of the m= line, as offer/answer
pairs them (RFC 3264 section 6).
"""

EARLY = "early"
CONFIRMED = "confirmed"


class MediaLeg:
    """One m= line of the LAN device: its RTP/RTCP bindings and the far end."""

    __slots__ = ("lan_rtp", "lan_rtcp", "rtp", "rtcp")

    def __init__(self, lan_rtp, lan_rtcp, rtp, rtcp):
        self.lan_rtp = lan_rtp
        self.lan_rtcp = lan_rtcp
        self.rtp = rtp              # Binding
        self.rtcp = rtcp            # Binding


class Call:
    __slots__ = ("call_id", "phone", "outgoing", "state", "invite_cseq", "legs",
                 "remote", "tags", "deadline", "_key", "_owner")

    def __init__(self, call_id, phone, outgoing, invite_cseq):
        self.call_id = call_id
        self.phone = phone          # LAN ip (text)
        self.outgoing = outgoing    # True when the LAN device sent the INVITE
        self.state = EARLY
        self.invite_cseq = invite_cseq
        self.legs = {}              # m= index -> MediaLeg
        self.remote = {}            # m= index -> ((ip, rtp port), (ip, rtcp port)) from the far end's SDP
        self.tags = []              # To-tags of confirmed dialogs (forked 2xx make several)
        self.deadline = 0.0
        self._key = (call_id, phone)
        self._owner = ("call", call_id, phone)

    def key(self):
        return self._key

    def owner(self):
        return self._owner


def remote_media(sdp, norm_ip):
    """{index: ((ip, port), (ip, rtcp_port))} from the far end's SDP.

    A disabled stream (port 0) and hold (c=0.0.0.0 or ::) say nothing about
    where media comes from, so they leave the earlier address in place.
    """
    out = {}
    for i in range(len(sdp.media)):
        m = sdp.media[i]
        if m.port == 0 or m.conn is None:
            continue
        ip = norm_ip(m.conn)
        if ip is None or ip == "0.0.0.0" or ip == "::":
            continue
        rtcp_ip = ip
        if m.rtcp_addr is not None:
            rtcp_ip = norm_ip(m.rtcp_addr) or ip
        rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
        out[i] = ((ip, m.port), (rtcp_ip, rtcp_port))
    return out
