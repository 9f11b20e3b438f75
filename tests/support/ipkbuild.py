"""Build the feed's packages with scripts/mkipk (.ipk) or scripts/mkapk (.apk) for the packaging tests."""
import os
import subprocess
import sys

from tests.support import ROOT


def _run(script, outdir, env=None):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "-o", str(outdir)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().split()


def build_all(outdir):
    """{package name: .ipk path}, built into outdir."""
    return {os.path.basename(p).split("_")[0]: p for p in _run("mkipk", outdir)}


def build_all_apk(outdir, epoch=None):
    """{package name: .apk path}, built into outdir (SOURCE_DATE_EPOCH=epoch if given)."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)) if epoch is not None else None
    return {os.path.basename(p).rsplit("-", 2)[0]: p for p in _run("mkapk", outdir, env)}
