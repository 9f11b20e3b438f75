"""Percentiles and the number formats the benchmarks print."""

from __future__ import annotations

from typing import Optional, Sequence


def pct(xs: Sequence[float], p: float) -> Optional[float]:
    """The p-th percentile (0-100) by nearest rank on the sorted values; None when there are none."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def us(x: Optional[float]) -> str:
    """Seconds as µs below 10 ms, as ms above; '-' for no value."""
    if x is None:
        return "-"
    if x < 0.01:
        return "%.0f µs" % (x * 1e6)
    return "%.1f ms" % (x * 1e3)


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or not b:
        return "-"
    return "%.1f×" % (a / b)
