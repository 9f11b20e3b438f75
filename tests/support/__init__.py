"""What the tests share, and nothing the router gets: the namespace lab (lab/), the lab
and QEMU fixtures, the skip-or-fail helper, the LuCI and packaging harnesses.

Import it from the checkout's root (`tests.support...`): pytest puts the root on the path
(pyproject's `pythonpath`), the lab's subprocesses get it in PYTHONPATH, bench/ scripts
insert it, and the QEMU VM's harness sits in /opt/sipalg-tests with the same layout.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
