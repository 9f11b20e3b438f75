"""The top Via each LAN device wrote, by branch, until its transaction is over.

A response must give the phone back exactly the sent-by it wrote (spacing,
case and an absent port included), which the rewritten Via no longer shows.
"""

EXPIRY = "transaction"      # timer kind


class Transactions:
    def __init__(self, timers):
        self.timers = timers
        self._sent_by = {}       # branch -> sent-by bytes as the device wrote them

    def __len__(self):
        return len(self._sent_by)

    def remember(self, branch, sent_by, until):
        self._sent_by[branch] = sent_by
        self.timers.schedule((EXPIRY, branch), until)

    def sent_by(self, branch):
        return self._sent_by.get(branch)

    def expire(self, branch, now, out):
        self._sent_by.pop(branch, None)
