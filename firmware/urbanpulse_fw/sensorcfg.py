# Checks for the sensor entries' keys (used by sensormake.py, at start only): numbers, pins,
# buses. Two sensors on one pin or one UART would both fail, so pins are handed out once.

# ESP32 GPIOs: 6..11 belong to the flash, 20, 24 and 28..31 do not exist, 34..39 are inputs.
_GPIO = tuple(range(0, 6)) + tuple(range(12, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40))
_NOT = " (not 6..11, 20, 24, 28..31)"


class Bad(ValueError):
    pass


def obj(v, name, keys):
    if type(v) is not dict:
        raise Bad("%s: must be an object, got %r" % (name, v))
    for k in v:
        if k not in keys:
            raise Bad("%s.%s: unknown key" % (name, k))
    return v


def num(e, key, name, default, lo, hi, integer=False):
    v = e.get(key, default)
    if v is ...:
        raise Bad("%s.%s: missing" % (name, key))
    if v is None and default is None:
        return None
    t = type(v)
    if (t is int or (t is float and not integer)) and lo <= v <= hi:
        return v
    raise Bad("%s.%s: must be %s %r..%r, got %r" % (
        name, key, "an integer" if integer else "a number in", lo, hi, v))


def flag(e, key, name, default):
    v = e.get(key, default)
    if v is True or v is False:
        return v
    raise Bad("%s.%s: must be true or false, got %r" % (name, key, v))


pins = {}  # type: dict[int, str]  # gpio -> owner ("i2c0": the pins of I2C bus 0)
buses = {}  # type: dict[str, dict[str, int]]  # "i2c0"/"uart2" -> {"bus": .., pins}


def pin(v, name, owner, out=False):
    if type(v) is not int or v not in _GPIO or (out and v > 33):
        raise Bad("%s: must be an integer %s pin %s, got %r" % (
            name, "output" if out else "input", ("0..33" if out else "0..39") + _NOT, v))
    o = pins.get(v)
    if o is not None and o != owner:
        raise Bad("%s: GPIO %d is already used by %s" % (name, v, o))
    pins[v] = owner
    return v


def bus(e, key, name, default, kind, ids):
    c = e.get(key, default)
    n = name + "." + key
    names = ("scl", "sda") if kind == "i2c" else ("tx", "rx")
    obj(c, n, ("bus",) + names)
    b = c.get("bus", default["bus"])
    if b not in ids or type(b) is not int:
        raise Bad("%s.bus: must be %s, got %r" % (n, " or ".join(str(i) for i in ids), b))
    owner = "%s%d" % (kind, b)
    if kind == "uart" and owner in buses:
        raise Bad("%s.bus: UART%d is already used by another sensor" % (n, b))
    d = {"bus": b}
    for p in names:
        d[p] = pin(c.get(p, default[p]), n + "." + p, owner, out=(p != "rx"))
    was = buses.get(owner)
    if was is not None and was != d:
        raise Bad("%s: I2C%d is already set up on SCL %d, SDA %d" % (n, b, was["scl"],
                                                                      was["sda"]))
    buses[owner] = d
    return d


def adc(e, name, default, owner):
    v = e.get("adc", default)
    if type(v) is not int or not 32 <= v <= 39:
        raise Bad("%s.adc: must be an ADC1 pin 32..39 (ADC2 does not work with WiFi on), "
                  "got %r" % (name, v))
    return pin(v, name + ".adc", owner)
