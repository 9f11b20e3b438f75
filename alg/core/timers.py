"""Expiry heap: O(log n) per timer, no scan of all bindings.

A binary heap of (deadline, seq, key) with lazy deletion: rescheduling or
cancelling a key only updates a dict, and stale heap entries are skipped
when they surface (and swept out when they outnumber the live ones).
Implemented here because MicroPython's heapq differs between ports.
"""


class Timers:
    def __init__(self):
        self._heap = []          # [(when, seq, key)]
        self._live = {}          # key -> (when, seq)
        self._seq = 0

    def __len__(self):
        return len(self._live)

    def deadline(self, key):
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def schedule(self, key, when):
        """Set key's deadline, replacing any earlier one."""
        self._seq += 1
        self._live[key] = (when, self._seq)
        self._push((when, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._rebuild()

    def cancel(self, key):
        self._live.pop(key, None)

    def next_deadline(self):
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now):
        """Remove and return the keys whose deadline is <= now, earliest first."""
        out = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return out
            when, seq, key = self._pop()
            del self._live[key]
            out.append(key)

    # -- heap internals

    def _stale(self, entry):
        live = self._live.get(entry[2])
        return live is None or live[1] != entry[1]

    def _drop_stale(self):
        heap = self._heap
        while heap and self._stale(heap[0]):
            self._pop()

    def _rebuild(self):
        self._heap = []
        for key in self._live:
            when, seq = self._live[key]
            self._push((when, seq, key))

    def _push(self, entry):
        heap = self._heap
        heap.append(entry)
        i = len(heap) - 1
        while i > 0:
            parent = (i - 1) >> 1
            if _less(entry, heap[parent]):
                heap[i] = heap[parent]
                i = parent
            else:
                break
        heap[i] = entry

    def _pop(self):
        heap = self._heap
        top = heap[0]
        last = heap.pop()
        n = len(heap)
        if n:
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and _less(heap[child + 1], heap[child]):
                    child += 1
                if _less(heap[child], last):
                    heap[i] = heap[child]
                    i = child
                else:
                    break
            heap[i] = last
        return top


def _less(a, b):
    # never compare keys: (when, seq) is unique
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])
