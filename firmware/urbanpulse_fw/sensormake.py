# Makes a driver's sensor object from its config entry (at start only): checks the entry's
# keys with sensorcfg.py, gets the bus objects from bus.py, imports only that driver.
from urbanpulse_fw import bus
from urbanpulse_fw import sensorcfg as c

I2C = {"bus": 0, "scl": 22, "sda": 21}
UART2 = {"bus": 2, "tx": 17, "rx": 16}
UART1 = {"bus": 1, "tx": 33, "rx": 25}
KEYS = {
    "bme280": ("i2c", "addr"), "pms5003": ("uart",), "scd41": ("i2c", "addr", "th"),
    "noise": ("adc", "db_per_v", "offset_db"),
    "pulse": ("pin", "edge", "min_gap_ms", "counter", "filter_ns"),
    "bay": ("i2c", "addr", "threshold", "dwell_s", "baseline"),
    "lamp": ("relay", "pzem", "lat", "lon", "auto"), "water": ("uart", "mount_cm", "pings"),
    "soil": ("adc", "dry", "wet"),
}
TYPES = ("bme280", "pms5003", "scd41", "noise", "pulse", "bay", "lamp", "water", "soil", "sim")


def _driver(mod):
    return __import__("urbanpulse_fw.drivers." + mod, None, None, ("Sensor",)).Sensor


def _i2c(e, name, t):
    ok = {"bme280": (118, 119), "scd41": (98,), "bay": (13,)}[t]
    a = e.get("addr", ok[0])
    if a not in ok or type(a) is not int:
        raise c.Bad("%s.addr: must be %s, got %r" % (name, " or ".join(str(x) for x in ok), a))
    i2c = bus.i2c(c.bus(e, "i2c", name, I2C, "i2c", (0, 1)))
    if t == "bme280":
        return _driver(t)(i2c, a)
    if t == "scd41":
        return _driver(t)(i2c, a, c.flag(e, "th", name, False))
    base = e.get("baseline")
    if base is not None and (type(base) is not list or len(base) != 3
                             or [x for x in base if type(x) is not int]):
        raise c.Bad("%s.baseline: must be [x, y, z] raw counts, got %r" % (name, base))
    return _driver(t)(i2c, a, c.num(e, "threshold", name, 300, 10, 30000),
                      c.num(e, "dwell_s", name, 10, 0, 3600), base)


def _analog(e, name, t):
    if t == "noise":
        k = c.num(e, "db_per_v", name, 50.0, 1, 1000)
        off = c.num(e, "offset_db", name, 0.0, -100, 100)
        return _driver(t)(bus.adc(c.adc(e, name, 35, name), t), k, off)
    dry = c.num(e, "dry", name, 52000, 0, 65535, True)
    wet = c.num(e, "wet", name, 21000, 0, 65535, True)
    if dry <= wet:
        raise c.Bad("%s.dry: must be above wet (a capacitive probe reads lower when wet), got "
                    "dry %r, wet %r" % (name, dry, wet))
    return _driver(t)(bus.adc(c.adc(e, name, 34, name), t), dry, wet)


def _lamp(e, name, t):
    lat = c.num(e, "lat", name, 52.37, -90, 90)
    lon = c.num(e, "lon", name, 4.9, -180, 180)
    auto = c.flag(e, "auto", name, True)
    from urbanpulse_fw.drivers import lamp

    relay = bus.pin_out(c.pin(e.get("relay", 26), name + ".relay", name, True), "relay",
                        lamp.start_level(auto), True)
    meter = None
    pz = e.get("pzem", {})
    if pz is not None:
        c.obj(pz, name + ".pzem", ("uart", "addr"))
        a = c.num(pz, "addr", name + ".pzem", 1, 1, 247, True)
        u = bus.uart(c.bus(pz, "uart", name + ".pzem", UART1, "uart", (1, 2)), "pzem")
        from urbanpulse_fw.drivers import pzem

        meter = pzem.Meter(u, a)
    return _driver(t)(relay, meter, lat, lon, auto)


def make(e, name, t):
    if t not in KEYS:
        raise c.Bad("%s.type: must be one of %s, got %r" % (name, ", ".join(TYPES), t))
    c.obj(e, name, ("type", "name", "interval_s") + KEYS[t])
    if t in ("bme280", "scd41", "bay"):
        return _i2c(e, name, t)
    if t in ("noise", "soil"):
        return _analog(e, name, t)
    if t == "lamp":
        return _lamp(e, name, t)
    if t == "pulse":
        edge = e.get("edge", "falling")
        if edge not in ("falling", "rising"):
            raise c.Bad("%s.edge: must be falling or rising, got %r" % (name, edge))
        gap = c.num(e, "min_gap_ms", name, 50, 0, 10000, True)
        rising = edge == "rising"
        p = bus.pin_in(c.pin(e.get("pin", 27), name + ".pin", name), not rising, t)
        k = None
        if "counter" in e:  # counted by a hardware unit, not the pin's interrupt
            if "min_gap_ms" in e:
                raise c.Bad("%s.min_gap_ms: the interrupt's debounce; a counter filters "
                            "with filter_ns (for solid-state outputs: relays bounce longer)"
                            % name)
            k = bus.counter(c.num(e, "counter", name, ..., 0, 7, True), p, rising,
                            c.num(e, "filter_ns", name, 10000, 0, 1000000, True))
        return _driver(t)(p, bus.irq_trigger(rising), int(rising), gap, k)
    mount = None
    if t == "water":
        mount = c.num(e, "mount_cm", name, ..., 10, 5000)
        pings = c.num(e, "pings", name, 5, 1, 15, True)
    u = bus.uart(c.bus(e, "uart", name, UART2, "uart", (1, 2)), t)
    if t == "water":
        return _driver(t)(u, mount, pings)
    return _driver(t)(u)
