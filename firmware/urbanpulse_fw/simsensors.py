# Stand-in for sensors.build() with simulated sensors only ("type": "sim"), used when the
# board's sensors.py (real drivers) is not there. Same interface: objects with .name,
# .interval_ms, .poll(now_ms), .read(t_ms) -> [(field, value)] and .fault.
from urbanpulse_fw import sim


class SimSensor:
    def __init__(self, name, model, interval_ms):
        self.name = name
        self.model = model
        self.interval_ms = interval_ms
        self.fault = None  # type: str | None

    def poll(self, now_ms):
        pass

    def read(self, t):
        try:
            r = self.model.read(t)
            self.fault = None
            return r
        except Exception as e:
            self.fault = "error %s" % e
            return []


def build(entries, kind, interval_s=5, seed=0, offset=0):
    """(sensors, errors): a bad entry is left out and named in errors, the rest work."""
    out = []  # type: list
    errors = []
    for i, e in enumerate(entries):
        k = "sensors[%d]" % i
        if type(e) is not dict or e.get("type") != "sim":
            errors.append("%s.type: must be sim, got %r" % (k, e.get("type")
                                                            if type(e) is dict else e))
            continue
        v = e.get("kind", kind)
        n = e.get("name", v)
        if v not in sim.KINDS:
            errors.append("%s.kind: must be one of %s, got %r" % (k, ", ".join(sim.KINDS), v))
            continue
        if n in [s.name for s in out]:
            errors.append("%s.name: duplicate %r" % (k, n))
            continue
        iv = e.get("interval_s", interval_s)
        out.append(SimSensor(n, sim.make(v, seed + 7919 * i, iv, offset), int(iv * 1000)))
    return out, errors
