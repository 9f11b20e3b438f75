"""Build the feed's packages with scripts/mkipk for the packaging tests."""
import os
import subprocess
import sys

from tests.support import ROOT


def build_all(outdir):
    """{package name: .ipk path}, built into outdir."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "mkipk"), "-o", str(outdir)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    return {os.path.basename(p).split("_")[0]: p for p in r.stdout.decode().split()}
