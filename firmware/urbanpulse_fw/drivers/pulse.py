# Vehicle detector (inductive loop detector or radar with a pulse output) on a pin: one pulse
# per vehicle, counted by a pin interrupt, or by a hardware counter (config "counter": the
# ESP32's PCNT unit, bus.counter). The interrupt only increments a counter (no allocation, no
# lock needed: the reader keeps its own copy of the count it last reported); on an ESP32 it is
# a soft interrupt, run when the VM gets to it, so pulses closer together than the CPU is
# busy merge. The hardware counter counts every edge, but its glitch filter is microseconds:
# right for a solid-state output, not for relay contacts, which the interrupt debounces.
import time

from urbanpulse_fw.drivers import base

STUCK_MS = 30000  # a pulse output held active this long is a detector or wiring fault


class Sensor(base.Sensor):
    def __init__(self, pin, trigger, active, min_gap_ms=50, counter=None):
        self.pin = pin
        self.counter = counter
        self.active = active  # the level of the output during a pulse
        self.gap = min_gap_ms  # relay contacts bounce: edges closer than this are one pulse
        self.count = self.seen = 0
        self.since = self.t0 = self.next = time.ticks_ms()
        self.edge = time.ticks_add(self.t0, -min_gap_ms)
        self.stuck = False
        if counter is None:
            pin.irq(trigger=trigger, handler=self.irq)
        else:
            counter.value(0)

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
        if self.counter is not None:
            v = self.counter.value(0)  # read and cleared at once: no edge lost between
        else:
            n = self.count
            v = n - self.seen
            self.seen = n
        ms = time.ticks_diff(now, self.t0)
        self.t0 = now
        if self.stuck:
            return "stuck"
        return [("vehicles", v), ("period_s", max(1, (ms + 500) // 1000))]
