# What every driver shares: the interface the main loop uses, and turning bus errors into a
# short fault string instead of an exception (a broken sensor must not stop the others).
import errno


def oserror_fault(e):
    """'timeout' for a stuck bus (SCL held low, no clock stretching end), else 'no_ack'
    (chip missing, unpowered or not answering: ENODEV/EIO on the ESP32)."""
    return "timeout" if e.args and e.args[0] == errno.ETIMEDOUT else "no_ack"


class Sensor:
    """.name, .interval_ms (settable), .fault (None or a short string), .poll(now_ms) for
    periodic work (called often, cheap), .read(t_ms) -> [(field, value), ...], never raises.

    Subclasses implement tick(now_ms) and sample(t_ms); sample returns the fields, or a fault
    string. A bus error marks the chip for set-up again, so it recovers by itself when it
    comes back (after a power cut it has lost its configuration).
    """

    fault = None
    err = None  # the last bus error, also from poll()
    ready = False  # chip configured
    dead = False  # no data for too long (drivers that stream)

    def __init__(self, name, interval_ms):
        self.name = name
        self.interval_ms = interval_ms

    def tick(self, now):
        pass

    def sample(self, t):
        return []

    def poll(self, now):
        try:
            self.tick(now)
        except OSError as e:
            self.ready = False
            self.fault = self.err = oserror_fault(e)

    def read(self, t):
        self.fault = None  # sample() may set one and still return what it has
        try:
            r = self.sample(t)
        except OSError as e:
            self.ready = False
            r = self.err = oserror_fault(e)
        if type(r) is str:
            self.fault = r
            return []
        return r
