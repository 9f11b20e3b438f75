"""The pure SIP/SDP NAT engine.

No sockets, files, clocks or subprocesses in here: bytes and `now` come in,
rewritten bytes and actions go out.  Every module must import and run under
MicroPython (1.23+): no dataclasses, typing, enum, f-string `=`, dict-order or
stable-sort assumptions, and only the small `re` subset (better: none).

Where things live:
  engine.py         Engine.handle(): the one entry point; the method handler table
  result.py         what handle() returns: payload, verdict, actions, events, mapping
  events.py         typed events (registered, call ended, refused, ...) for the shell
  actions.py        what the engine asks the shell to do (open/refresh/move/close, send)
  policy.py         who may get a binding or pinhole, for which port, for how long
  mapping.py        the sender's addresses mapped across the NAT, one rule both ways
  message.py        SIP message model: start line, header lines, body (byte-preserving)
  grammar.py        RFC 3261 grammar of what the rewrite reads, checked before rewriting
  headers.py        header names, compact forms, splitting comma lists
  uri.py            host:port inside SIP URIs, IPv6 references
  via.py            Via sent-by / received / rport / maddr rewriting
  nameaddr.py       Contact, Route, Record-Route, From, To rewriting
  sdp.py            SDP parsing and c=/o=/m=/a=rtcp rewriting
  multipart.py      multipart bodies: find and replace the SDP part
  keepalive.py      CRLFCRLF / CRLF / NUL keep-alives, the OPTIONS answer
  addr.py           IP address text: parse, normalise, match networks
  bindings.py       LAN ip:port <-> WAN ip:port allocation and who holds each binding
  timers.py         expiry heap (O(log n) per timer)
  transactions.py   the Via each device wrote, until its response comes back
  registrations.py  REGISTER tracking and lifetimes
  dialogs.py        INVITE dialogs: offer/answer, binding a call's media
  call_states.py    a call's states and transitions, as a table
  config.py         engine settings
"""
