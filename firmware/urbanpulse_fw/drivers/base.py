# What every driver shares: the interface the main loop uses, and turning bus errors into a
# short fault string instead of an exception (a broken sensor must not stop the others).
import errno


class Sensor:
    """.name, .interval_ms (settable), .fault (None or a short string), .poll(now_ms) for
    periodic work (called often, cheap), .read(t_ms) -> [(field, value), ...], never raises.

    Subclasses implement sample(t_ms), and tick(now_ms) if they have periodic work; sample
    returns the fields, or a fault string. A bus error marks the chip for set-up again, so it
    recovers by itself when it comes back (after a power cut it has lost its configuration).
    Few methods on purpose: each function object costs heap on a 64 KiB board.
    """

    name = ""  # sensors.build() sets .name and .interval_ms
    interval_ms = 5000
    fault = None
    err = None  # the last bus error, also from poll()
    ready = False  # chip configured
    dead = False  # no data for too long (drivers that stream)
    # A deep-sleep wake waits this long (ms from the start) for a first reading before it
    # reports the sensor "not_ready" (deepsleep.py); 0: read once, at once.
    wait_ms = 0

    def rest(self):
        """Before a deep sleep: put the chip to rest (a fan, a laser), if it has one."""

    def tick(self, now):
        pass

    def poll(self, now):
        self.read(now, True)

    def read(self, t, tick=False):
        if not tick:
            self.fault = None  # sample() may set one and still return what it has
        try:
            r = self.tick(t) if tick else self.sample(t)  # type: ignore[attr-defined]
        except OSError as e:
            self.ready = False
            # "timeout" for a stuck bus (SCL held low, no clock stretching end), else
            # "no_ack" (chip missing, unpowered or not answering: ENODEV/EIO on the ESP32).
            r = self.err = "timeout" if e.args and e.args[0] == errno.ETIMEDOUT else "no_ack"
        if type(r) is str:
            self.fault = r
            return []
        return r
