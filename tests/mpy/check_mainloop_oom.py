# The main loop out of memory (urbanpulse_fw/mainloop.py MainLoop.run): a passing shortage is
# waited out with a growing pause and logged once; one that persists ends in a clean stop
# (buffer to flash) and a reset, not in a loop that only spins.
import os
import time

from mpytest import eq, rmtree, tmpdir
from urbanpulse_fw import mainloop


class FakeLoop:
    # Just what MainLoop.run touches: its step() fails as told.
    def __init__(self, fails, steps):
        self.cfg = {"max_messages": None, "kind": "water", "uid": "x"}
        self.fails = fails  # how many steps in a row raise MemoryError (then steps succeed)
        self.steps = steps  # successful steps before a KeyboardInterrupt ends the run
        self.lines = []
        self.stopped = 0
        self.acked = 0
        self.cause = "power"
        self.outbox = type("O", (), {"boot": 1, "max_bytes": 1024})()
        self.up = type("U", (), {"start": lambda self: None})()

    def log(self, *parts):
        self.lines.append("".join(str(p) for p in parts))

    def step(self):
        if self.fails:
            self.fails -= 1
            raise MemoryError("memory allocation failed")
        self.steps -= 1
        if self.steps < 0:
            raise KeyboardInterrupt

    def stop(self):
        self.stopped += 1


def count(lines, text):
    n = 0
    for line in lines:
        if text in line:
            n += 1
    return n


def test_a_passing_shortage_is_logged_once_and_survived():
    f = FakeLoop(5, 3)
    mainloop.MainLoop.run(f)
    eq(count(f.lines, "out of memory"), 1, "one line for the episode")
    eq(f.stopped, 1, "then the normal stop")


def test_a_persistent_shortage_stops_cleanly_and_resets():
    d = tmpdir("oom")
    here = os.getcwd()
    os.chdir(d)
    try:
        f = FakeLoop(10 ** 9, 0)
        t = time.ticks_ms()
        try:
            mainloop.MainLoop.run(f)
            raise AssertionError("no reset")
        except SystemExit as e:
            eq(e.args[0] if e.args else e.code, 3, "hw.reset() on the host")
        ms = time.ticks_diff(time.ticks_ms(), t)
        eq(f.fails, 10 ** 9 - 12, "MemoryErrors before the reset")
        assert 2000 < ms < 20000, ms  # paused between tries, not spinning
        eq(count(f.lines, "out of memory ("), 1, "logged once")
        eq(f.stopped, 1, "the buffer went to flash first")
        with open("reset_cause") as fh:
            eq(fh.read(), "hard", "what the chip reports next (as an ESP32's machine.reset())")
        with open("rtcmem") as fh:
            eq(fh.read(), " memory", "the intent the next start reports")
    finally:
        os.chdir(here)
        rmtree(d)
