"""Fixtures for the end-to-end lab: real namespaces, kernel, nftables, NFQUEUE and SIP peers.

Outside CI a missing tool or no root skips with the reason; with CI=true it fails
(tests.support.need).
"""
from tests.support.fixtures import HostRouter, lab_fixtures

lab, logdir, alg = lab_fixtures(HostRouter())
