"""Expiry heap: O(log n) per timer, no scan of all bindings.

A binary heap of (deadline, key) with lazy deletion: rescheduling or
cancelling a key only updates a dict, and stale heap entries are skipped
when they surface (and swept out when they outnumber the live ones).
Entries compare as tuples, so keys with one deadline are compared: a key is
(kind, ...) with a str kind and, per kind, values of one type each (the
engine's keys; no sequence number per timer, which 10k registrations would
pay 36 bytes each for).
CPython's heapq does the sifting in C; MicroPython's heapq differs between
ports, so there the heap is sifted here.
"""

import sys

if sys.implementation.name == "cpython":
    from heapq import heappush as _heappush, heappop as _heappop, heapify as _heapify
else:
    _heappush = _heappop = _heapify = None


class Timers:
    def __init__(self):
        self._heap = []          # [(when, key)]
        self._live = {}          # key -> its live heap entry (the same tuple: one per timer)

    def __len__(self):
        return len(self._live)

    def deadline(self, key):
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def schedule(self, key, when):
        """Set key's deadline, replacing any earlier one."""
        live = self._live
        old = live.get(key)
        if old is not None:
            key = old[1]             # the key object the heap holds already: stale entries share it
        entry = live[key] = (when, key)
        heap = self._heap
        if _heappush is not None:
            _heappush(heap, entry)
        else:
            _push(heap, entry)
        if len(heap) > len(live) + (len(live) >> 1) + 64:      # stale entries cost memory: at most half
            self._rebuild()

    def cancel(self, key):
        self._live.pop(key, None)

    def next_deadline(self):
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now, limit=None):
        """Remove and return the keys whose deadline is <= now, earliest first (at most limit)."""
        out = []
        heap = self._heap
        while limit is None or len(out) < limit:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return out
            when, key = _heappop(heap) if _heappop is not None else _pop(heap)
            del self._live[key]
            out.append(key)
        return out

    # -- heap internals

    def _drop_stale(self):
        heap = self._heap
        live = self._live
        while heap:
            top = heap[0]
            if live.get(top[1]) is top:
                return
            if _heappop is not None:
                _heappop(heap)
            else:
                _pop(heap)

    def _rebuild(self):
        heap = list(self._live.values())
        if _heapify is not None:
            _heapify(heap)
        else:
            heap.sort()
        self._heap = heap


def _push(heap, entry):
    heap.append(entry)
    i = len(heap) - 1
    while i > 0:
        parent = (i - 1) >> 1
        p = heap[parent]
        if entry < p:
            heap[i] = p
            i = parent
        else:
            break
    heap[i] = entry


def _pop(heap):
    top = heap[0]
    last = heap.pop()
    n = len(heap)
    if n:
        i = 0
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and heap[child + 1] < heap[child]:
                child += 1
            if heap[child] < last:
                heap[i] = heap[child]
                i = child
            else:
                break
        heap[i] = last
    return top
