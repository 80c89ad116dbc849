# Battery boards (config "deep_sleep": {"wake_s": 300, "publish_every": 6}): every start is a
# wake-up. Take one sample, append it to the flash spool, and on every publish_every-th wake
# (and the first after power-on) connect, set the clock, publish the spool oldest first, the
# health report and answer queued commands (a persistent MQTT session keeps them while the
# board sleeps); then deep sleep for wake_s. The wake counter lives in RTC memory (a file on
# the host, where deep sleep is an exit with hwmisc.EXIT_DEEPSLEEP that the fleet/test
# restarts).
import sys
import time

from urbanpulse_fw import clock, hw

WINDOW_MS = 30000  # how long a publishing wake may stay up (real ms)


def count():
    # The wake counter, bumped (in RTC memory).
    try:
        n = int(hw.rtc_get()[0] or b"0")
    except ValueError:
        n = 0
    hw.rtc_set(b"%d" % (n + 1))
    return n


def _sleep(ms):
    # hwmisc.deepsleep() without loading hwmisc: after a publishing wake the heap is full.
    if hw.ON_BOARD:
        import machine

        machine.deepsleep(ms)
    with open("deepsleep_ms", "w") as f:
        f.write("%d" % ms)
    with open("reset_cause", "w") as f:
        f.write("deepsleep")
    if clock._anchor is not None:
        # The host's emulated clock (host_clock) goes on across the sleep, as an ESP32's RTC
        # does: the next start reads it (app.py).
        with open("hostclock", "w") as f:
            f.write("%d" % (clock.now_ms() + ms))
    sys.exit(4)  # hwmisc.EXIT_DEEPSLEEP


def read_all(loop):
    """Every sensor's first reading of this wake: each is polled until it has one, or until
    its wait_ms (an SCD41's first measurement, a PMS5003's warm-up) is up, then reported
    "not_ready"; a sensor with a fault is not waited for."""
    t0 = time.ticks_ms()
    left = list(loop.sensors)
    fields = []  # type: list
    while left:
        now = clock.ticks()
        t = clock.now_ms()
        for s in left:
            s.poll(now)
        for s in list(left):
            got = s.read(t)
            # (Simulated sensors have neither wait_ms nor rest: they read at once.)
            if got or s.fault or time.ticks_diff(time.ticks_ms(), t0) >= getattr(
                    s, "wait_ms", 0):
                left.remove(s)
                fields.extend(got)
                if not got and not s.fault:
                    s.fault = "not_ready"
        if left:
            time.sleep_ms(100)
            if loop.wdt is not None:
                loop.wdt.feed()
    return fields


def wake(loop, n=None):
    """One wake; n: the wake counter (count()), read before the main loop was made."""
    if n is None:
        n = count()
    ob = loop.outbox
    cfg = loop.cfg
    fields = read_all(loop)
    t = clock.now_ms()
    now = clock.ticks()
    if fields:
        if clock.is_valid(t):
            loop.sample(now, t, fields)
        else:
            ob.dropped += 1  # no time and no RAM across deep sleep to stamp it later
            loop.log("clock not set: sample dropped")
    ob.spill()
    if n % cfg["publish_every"] == 0:
        loop.log("wake %d: publishing %d samples" % (n, ob.held()))
        loop.up.clean = False  # the broker keeps commands for us while we sleep
        for i in range(len(loop.due)):
            loop.due[i] = clock.add(now, 1 << 28)  # no sampling while awake
        loop.flushing = True
        loop.up.start()
        end = time.ticks_add(time.ticks_ms(), WINDOW_MS)
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            loop.step()
            if loop.up.client.connected and not ob.held() and not ob.msg and \
                    loop.health_pid and not loop.up.client.inflight():
                loop.up.wait(300)  # a moment for queued commands
                if not loop.up.client.inflight():
                    break
        loop.stop()
    for s in loop.sensors:
        if hasattr(s, "rest"):
            s.rest()
    _sleep(int(cfg["wake_s"] * 1000))
