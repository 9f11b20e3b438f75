"""The top Via each LAN device wrote, by branch, until its transaction is over.

A response must give the phone back exactly the sent-by it wrote (spacing,
case and an absent port included), which the rewritten Via no longer shows.
Bounded per LAN host and in all: past a cap nothing is remembered, and the
response's Via is rebuilt from the binding instead (the same address and
port, written plainly), so a flooding host costs others nothing.  A sent-by
already written that plainly needs no memory at all: the rebuild gives back
the same bytes, and most phones write it so (10k registrations need no
10k remembered Vias).
"""

from .uri import format_host

EXPIRY = "transaction"      # timer kind


def worth_remembering(sent_by, ip, port):
    """Whether a sent-by differs from what the response's rebuild would write (ip:port, plainly)."""
    return port is None or sent_by != format_host(ip) + b":" + str(port).encode()


class Transactions:
    def __init__(self, timers, config=None):
        self.timers = timers
        self.config = config
        self._sent_by = {}       # branch -> (sent-by bytes as the device wrote them, LAN ip)
        self._per_host = {}      # LAN ip -> number remembered

    def __len__(self):
        return len(self._sent_by)

    def remember(self, branch, sent_by, host, until):
        if branch in self._sent_by:
            self._sent_by[branch] = (sent_by, self._sent_by[branch][1])
        else:
            c = self.config
            n = self._per_host.get(host, 0)
            if c is not None and (n >= c.limit_host_transactions or len(self._sent_by) >= c.limit_transactions):
                return
            self._sent_by[branch] = (sent_by, host)
            self._per_host[host] = n + 1
        self.timers.schedule((EXPIRY, branch), until)

    def sent_by(self, branch):
        entry = self._sent_by.get(branch)
        return None if entry is None else entry[0]

    def expire(self, key, now, out):
        branch = key[1]
        entry = self._sent_by.pop(branch, None)
        if entry is not None:
            n = self._per_host.get(entry[1], 1) - 1
            if n > 0:
                self._per_host[entry[1]] = n
            else:
                self._per_host.pop(entry[1], None)
