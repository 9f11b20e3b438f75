"""The pure SIP/SDP NAT engine.

No sockets, files, clocks or subprocesses in here: bytes and `now` come in,
rewritten bytes and actions go out.  Every module must import and run under
MicroPython (1.23+): no dataclasses, typing, enum, f-string `=`, dict-order or
stable-sort assumptions, and only the small `re` subset (better: none).

Where things live:
  message.py        SIP message model: start line, header lines, body (byte-preserving)
  headers.py        header names, compact forms, splitting comma lists
  uri.py            host:port inside SIP URIs, IPv6 references
  via.py            Via sent-by / received / rport / maddr rewriting
  nameaddr.py       Contact, Route, Record-Route, From, To rewriting
  sdp.py            SDP parsing and c=/o=/m=/a=rtcp rewriting
  multipart.py      multipart bodies: find and replace the SDP part
  keepalive.py      CRLFCRLF / CRLF / NUL keep-alives
  addr.py           IP address text: parse, normalise, match networks
  bindings.py       LAN ip:port <-> WAN ip:port allocation
  timers.py         expiry heap (O(log n) per timer)
  registrations.py  REGISTER lifetimes
  dialogs.py        INVITE dialogs, offer/answer, media pinholes
  actions.py        what the engine asks the shell to do
  config.py         engine settings
  engine.py         Engine.handle(): the one entry point
"""
