# A tiny test runner for MicroPython (no unittest on the board's interpreter):
#
#   micropython tests/mpy/runner.py MODULE [FUNC]
#
# imports tests/mpy/MODULE.py and runs every function whose name starts with "test_" (or only
# FUNC); prints "PASS name" or "FAIL name: ..." with the traceback, one per test, and exits
# non-zero if any failed. The firmware under test is the real one: firmware/ and
# firmware/host/ are put on sys.path from this file's own location.
import os
import sys


def _dirname(path):
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _setup_path():
    here = sys.argv[0] if sys.argv and sys.argv[0] else "runner.py"
    if not here.startswith("/"):
        here = os.getcwd() + "/" + here
    mpy_dir = _dirname(here)
    root = _dirname(_dirname(mpy_dir))
    for p in (mpy_dir, root + "/firmware", root + "/firmware/host"):
        if p not in sys.path:
            sys.path.insert(0, p)


def run(module_name, only=None):
    mod = __import__(module_name)
    names = [only] if only else sorted(n for n in dir(mod) if n.startswith("test_"))
    failed = 0
    for name in names:
        try:
            fn = getattr(mod, name)
        except AttributeError:
            failed += 1
            print("FAIL %s: no such test in %s" % (name, module_name))
            continue
        try:
            fn()
        except Exception as e:
            failed += 1
            print("FAIL %s: %r" % (name, e))
            sys.print_exception(e, sys.stdout)
        else:
            print("PASS %s" % name)
    print("%s: %d passed, %d failed" % (module_name, len(names) - failed, failed))
    return failed


def main():
    args = sys.argv[1:]
    if not args or len(args) > 2:
        print("usage: micropython tests/mpy/runner.py MODULE [FUNC]")
        sys.exit(2)
    _setup_path()
    sys.exit(1 if run(args[0], args[1] if len(args) > 1 else None) else 0)


if __name__ == "__main__":  # the WebAssembly port imports run() instead (tests/wasm/run.mjs)
    main()
