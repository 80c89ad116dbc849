# Vehicle detector (inductive loop detector or radar with a pulse output) on a pin: one pulse
# per vehicle, counted by a pin interrupt. The interrupt only increments a counter (no
# allocation, no lock needed: the reader keeps its own copy of the count it last reported).
import time

from urbanpulse_fw.drivers import base

STUCK_MS = 30000  # a pulse output held active this long is a detector or wiring fault


class Sensor(base.Sensor):
    def __init__(self, pin, trigger, active, min_gap_ms=50):
        self.pin = pin
        self.active = active  # the level of the output during a pulse
        self.gap = min_gap_ms  # relay contacts bounce: edges closer than this are one pulse
        self.count = self.seen = 0
        self.since = self.t0 = self.next = time.ticks_ms()
        self.edge = time.ticks_add(self.t0, -min_gap_ms)
        self.stuck = False
        pin.irq(trigger=trigger, handler=self.irq)

    def irq(self, p):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.edge) >= self.gap:
            self.count += 1
        self.edge = now

    def tick(self, now):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) < 0:
            return
        self.next = time.ticks_add(now, 1000)
        if self.pin.value() != self.active:
            self.since = now
            self.stuck = False
        elif time.ticks_diff(now, self.since) > STUCK_MS:
            self.stuck = True  # until the output goes inactive (not undone by a ticks wrap)

    def sample(self, t):
        self.next = time.ticks_ms()
        self.tick(0)
        now = time.ticks_ms()
        n = self.count
        v = n - self.seen
        self.seen = n
        ms = time.ticks_diff(now, self.t0)
        self.t0 = now
        if self.stuck:
            return "stuck"
        return [("vehicles", v), ("period_s", max(1, (ms + 500) // 1000))]
