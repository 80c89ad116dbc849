# Builds the board's sensors from config.json's "sensors" list (format and wiring:
# firmware/README.md, "Sensors and wiring"). A bad entry is skipped with an error naming the
# key and the value, so the board still connects and reports it; only the driver modules the
# entries name are imported. Needed once at start: the app may unload this module afterwards.
#
# Three small modules, not one: MicroPython compiles a whole module at once, and on a 64 KiB
# heap a big one does not fit. A board of simulated sensors only needs this one.
import gc
import sys


def _sim(e, name, i, kind, seed, interval_s, offset):
    from urbanpulse_fw import sim

    k = e.get("kind", kind)
    if k not in sim.KINDS:
        raise ValueError("%s.kind: must be one of %s, got %r" % (name, ", ".join(sim.KINDS), k))
    for key in e:
        if key not in ("type", "name", "interval_s", "kind"):
            raise ValueError("%s.%s: unknown key" % (name, key))
    s = sim.make(k, seed + 7919 * i, interval_s, offset)
    s.kind = k
    return s


def build(entries, kind, interval_s=5, seed=0, utc_offset_s=0):
    """(sensor objects, error strings) for config.json's "sensors" list on a board of this
    kind; interval_s is the default sampling interval, seed and utc_offset_s are for the
    simulated sensors."""
    if type(entries) is not list:
        return [], ["sensors: must be a list, got %r" % (entries,)]
    if not entries:
        return [], ["sensors: empty: the board has nothing to measure"]
    out = []
    errors = []
    names = []
    fresh = True
    for i, e in enumerate(entries):
        name = "sensors[%d]" % i
        try:
            if type(e) is not dict:
                raise ValueError("%s: must be an object, got %r" % (name, e))
            t = e.get("type")
            n = e.get("name", e.get("kind", kind) if t == "sim" else t)
            if type(n) is not str or not 1 <= len(n) <= 24:
                raise ValueError("%s.name: must be a string of 1..24 characters, got %r"
                                 % (name, n))
            if n in names:
                raise ValueError("%s.name: %r is taken by another sensor: give each its own "
                                 "name" % (name, n))
            v = e.get("interval_s", interval_s)
            if type(v) not in (int, float) or not 0.01 <= v <= 86400:
                raise ValueError("%s.interval_s: must be a number in 0.01..86400, got %r"
                                 % (name, v))
            if t == "sim":
                s = _sim(e, name, i, kind, seed, interval_s, utc_offset_s)
            else:
                if fresh:  # pins and buses are handed out anew
                    gc.collect()
                    from urbanpulse_fw import sensorcfg

                    sensorcfg.pins.clear()
                    sensorcfg.buses.clear()
                    fresh = False
                from urbanpulse_fw import sensormake  # the drivers' config checks

                s = sensormake.make(e, name, t)
                s.kind = kind  # set_interval may name the kind
            s.name = n
            s.interval_ms = int(v * 1000)
        except Exception as x:
            m = str(x)
            if not m.startswith(name):  # not ours: e.g. the ESP32 refusing a pin
                m = "%s: cannot set up: %r" % (name, x)
            errors.append(m)
            continue
        names.append(n)
        out.append(s)
    p = sys.modules.get("urbanpulse_fw")
    for m in ("sensormake", "sensorcfg", "bus"):  # needed only now: the drivers hold the buses
        sys.modules.pop("urbanpulse_fw." + m, None)
        if p is not None and hasattr(p, m):
            delattr(p, m)
    return out, errors
