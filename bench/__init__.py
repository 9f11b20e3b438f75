"""Benchmarks: they print numbers and assert nothing (tests/test_bench_smoke.py only checks they run).

The lab benchmarks share their router set-ups (routers.py), the SIP they send (sipmsg.py),
the WAN-side answerer (responder.py) and their statistics (stats.py).  Each script runs from
the checkout's root as `python3 bench/NAME.py` and puts the root on the path itself.
"""
