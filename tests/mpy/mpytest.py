# Assertion helpers for the MicroPython checks (MicroPython has no unittest/pytest).
import os


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail unless it is an exc_type."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised" % exc_type.__name__)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what or "value", got, want))


class setting:
    """with setting(module, name, value): module.name is value inside, then what it was (a
    driver's timing constant shortened so a check need not wait for minutes)."""

    def __init__(self, module, name, value):
        self.module, self.name, self.value = module, name, value

    def __enter__(self):
        self.was = getattr(self.module, self.name)
        setattr(self.module, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.was)


def encode_sample(t, fields):
    """A sample as the board buffers it: compact JSON bytes."""
    from urbanpulse_fw import telemetry

    return bytes(telemetry.encode(b'{"t":%d' % t, fields))


def payload(msg):
    """The bytes of a telemetry message as streamed to the socket."""
    return b"".join(bytes(msg.piece(j)) for j in range(msg.pieces))


def tmpdir(name):
    """A fresh directory for one check, under $URBANPULSE_TEST_TMP (set by the pytest driver)
    or /tmp."""
    # (The WebAssembly port's os has no getenv: its checks run in an in-memory /tmp.)
    base = (os.getenv("URBANPULSE_TEST_TMP") if hasattr(os, "getenv") else None) or "/tmp"
    tag = int.from_bytes(os.urandom(4), "little") if hasattr(os, "urandom") else id(base)
    path = "%s/%s-%d" % (base, name, tag)
    os.mkdir(path)
    return path


def in_tmpdir(fn):
    """fn, run in a fresh directory of its own as the cwd (checks of code that keeps files in
    the board's folder), removed after."""
    def run():
        here = os.getcwd()
        d = tmpdir(fn.__name__)
        os.chdir(d)
        try:
            fn()
        finally:
            os.chdir(here)
            rmtree(d)
    return run


def rmtree(path):
    for entry in os.ilistdir(path):
        p = path + "/" + entry[0]
        if entry[1] == 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)
