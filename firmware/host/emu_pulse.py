# Emulated vehicle detector output on a pin: one pulse per vehicle, delivered to the pin's
# interrupt handler when the firmware next touches the pin (the host has no interrupts).
# Vehicles arrive at random at the simulated road's flow; a test queues them with .pulses(n)
# (auto off) or .bounce() (one pulse with contact bounce). Fault "stuck": output held active.
# Counted by a hardware counter (hostbus.Counter) instead, every edge counts, at once: bounces
# too (its filter is microseconds), and pulses too close together for an interrupt.
import time

from urbanpulse_fw import clock
from urbanpulse_fw.sim import base


class Chip:
    fault = None

    def __init__(self, seed=1):
        self.rng = base.Rng(seed)
        self.capacity = self.rng.uniform(400, 1800)  # vehicles per hour the road takes
        self.queue = 0
        self.edges = 0  # edges of one bouncing pulse
        self.auto = True
        self.counted = 0  # edges a hardware counter saw
        self.t = self.last = time.ticks_ms()

    def pulses(self, n):
        self.auto = False
        self.queue += n

    def bounce(self):
        self.auto = False
        self.edges += 3

    def level(self, pin):
        return pin.active if self.fault == "stuck" else 1 - pin.active

    def count(self):
        """A hardware counter's value: every edge so far, since it was last cleared."""
        self.arrive()
        if self.fault != "stuck":
            self.counted += self.queue + self.edges
            self.queue = self.edges = 0
        return self.counted

    def arrive(self):
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self.t) / 1000
        self.t = now
        if self.fault == "stuck":
            return
        if self.auto:
            h = base.local_hour(clock.now_ms())
            flow = self.capacity * (0.03 + 0.4 * base.activity(h) + 0.55 * base.rush(h))
            self.queue += self.rng.poisson(flow * dt / 3600)

    def deliver(self, pin):
        self.arrive()
        if pin.handler is None or self.fault == "stuck":
            return
        while self.edges or self.queue:
            # Pulses of separate vehicles are apart in time (the host delivers them late).
            wait = 60 - time.ticks_diff(time.ticks_ms(), self.last)
            if wait > 0:
                time.sleep_ms(wait)
            if self.edges:
                while self.edges:  # one pulse, its edges within a millisecond
                    self.edges -= 1
                    pin.handler(pin)
            else:
                self.queue -= 1
                pin.handler(pin)
            self.last = time.ticks_ms()
