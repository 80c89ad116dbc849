# How the main loop stamps samples (urbanpulse_fw/mainloop.py MainLoop.sample): each sample's
# time is its key in storage, so no two share one and none goes back in time, even when a
# stalled pass makes two samples in one millisecond or NTP steps the clock back.
import json

from mpytest import eq
from urbanpulse_fw import mainloop, telemetry


class Loop:
    # What MainLoop.sample touches, with a real outbox.
    def __init__(self):
        self.outbox = telemetry.Outbox(1, 50, 4096)
        self.taken = 0
        self.clock_ok = True
        self.early = []
        self.last_t = 0

    def log(self, *parts):
        pass

    def times(self):
        ob = self.outbox
        return [json.loads(bytes(ob.part(i)))["t"] for i in range(ob.count)]


def test_samples_in_one_millisecond_or_after_a_clock_step_back_keep_distinct_times():
    loop = Loop()
    t = 1795200000000
    for at in (t, t, t - 5000, t + 10):  # a burst after a stall, then NTP set the clock back
        mainloop.MainLoop.sample(loop, 0, at, [("occupied", True)])
    eq(loop.times(), [t, t + 1, t + 2, t + 10], "each after the one before")
    eq(loop.taken, 4, "none lost")
