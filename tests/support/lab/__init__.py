"""A test lab of network namespaces: phones, a NAT router, a SIP server.

Used by the end-to-end tests, the QEMU VM's scenarios, bench/nat_compare.py and
`make demo` (`python3 -m tests.support.lab.demo`).  Traffic never leaves the
namespaces it creates.
"""
