"""SIP requests the lab's tests send by hand, and one trip of them through the router."""

from __future__ import annotations

from typing import Union

from tests.support.lab.netns import Lab, PHONES, SERVER
from tests.support.lab.peers import received, recv_udp, send_udp


def options(call_id: Union[bytes, str, int], via_host: str = PHONES[0]) -> bytes:
    """An out-of-dialog OPTIONS to bob at the server; via_host also names From and Contact."""
    cid = call_id if isinstance(call_id, bytes) else str(call_id).encode()
    host = via_host.encode()
    return (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK%s\r\n"
            b"From: <sip:a@%s>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"
            b"Contact: <sip:a@%s:5060>\r\nContent-Length: 0\r\n\r\n" % (host, cid, host, cid, host))


def invite(call_id: Union[bytes, str, int], rtp: int, src_port: int = 5060, rtcp: Union[int, None] = None) -> bytes:
    """An INVITE from phone 1 (PHONES[0]:src_port) to bob at the server, offering audio on rtp."""
    cid = call_id if isinstance(call_id, bytes) else str(call_id).encode()
    sdp = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n%s"
           % (rtp, b"a=rtcp:%d\r\n" % rtcp if rtcp else b""))
    return (b"INVITE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:%d;branch=z9hG4bK%s\r\n"
            b"From: <sip:alice@203.0.113.10>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: %s\r\n"
            b"CSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.2:%d>\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: %d\r\n\r\n" % (src_port, cid, cid, src_port, len(sdp))) + sdp


def options_through(lab: Lab, call_id: Union[bytes, str, int]):
    """One OPTIONS from phone 1 (5060) to the server (5060): ((src ip, port), payload) as it arrived."""
    rx = recv_udp(lab, lab.wan, (SERVER, 5060))
    send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5060), options(call_id))
    return received(rx)
