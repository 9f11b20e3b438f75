"""sipalg: a SIP application layer gateway for OpenWrt routers.

`alg.core` is the pure engine (no I/O; runs on CPython and MicroPython);
everything else in this package is the shell around it.
"""
__version__ = "0.1.0"
