"""Fixtures for the scenarios that run inside the QEMU test VM (qemu/, `make qemu-test`):
the lab's fixtures with the VM as the router and the installed package as the daemon
(tests.support.vm).  guest_scenarios.py is only ever run by the VM's sipalg-vm-test;
the host's pytest does not collect it.
"""
from tests.support.fixtures import lab_fixtures
from tests.support.vm import VmRouter

lab, logdir, alg = lab_fixtures(VmRouter())
