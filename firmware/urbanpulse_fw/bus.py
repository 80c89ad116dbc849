# The machine-API objects the drivers talk to: on the ESP32 from `machine`; on a PC (the unix
# port's machine has no I2C/UART/Pin/ADC) from firmware/host/: hostlink.py passes every bus
# transaction to the emulated chips (hostbus.py, emu_*.py) in a process of their own. `chip`
# tells the host which chip to emulate on a UART or pin; the ESP32 ignores it.
import sys

HOST = sys.platform in ("linux", "darwin")
# On a PC the chips are emulated in a process of their own (host/hostlink.py), unless a check
# drives them in this one (it has imported host/hostbus.py).
m = __import__(("hostbus" if "hostbus" in sys.modules else "hostlink") if HOST else "machine")

_i2c = {}  # type: dict[int, object]  # one I2C object per bus, shared by its chips


def i2c(c):
    b = _i2c.get(c["bus"])
    if b is None:
        b = _i2c[c["bus"]] = m.I2C(c["bus"], scl=m.Pin(c["scl"]), sda=m.Pin(c["sda"]),
                                   freq=100000)
    return b


def uart(c, chip, baud=9600):
    if HOST:
        return m.UART(c["bus"], baud, tx=c["tx"], rx=c["rx"], chip=chip)
    return m.UART(c["bus"], baudrate=baud, tx=c["tx"], rx=c["rx"], timeout=0)


def pin_in(n, pull_up, chip):
    p = m.Pin.PULL_UP if pull_up else None
    if HOST:
        return m.Pin(n, m.Pin.IN, p, chip=chip)
    return m.Pin(n, m.Pin.IN, p)


def pin_out(n, chip, value=0, hold=False):
    """An output pin at ``value``; with ``hold`` (the ESP32's pad hold) its level stays
    through a reset, until the next start sets it (held_value)."""
    if HOST:
        p = m.Pin(n, m.Pin.OUT, chip=chip)
        p.value(value)
        return p
    if hold:
        return m.Pin(n, m.Pin.OUT, value=value, hold=True)
    return m.Pin(n, m.Pin.OUT, value=value)


def held_value(p, v):
    """Set a held output pin: a held pad ignores writes, so it is set up again, held."""
    if p.value() != v:
        if HOST:
            p.value(v)
        else:
            p.init(m.Pin.OUT, value=v, hold=True)


def adc(n, chip):
    # 11 dB attenuation: the whole 0..3.3 V range (read_uv() is calibrated on the ESP32).
    if HOST:
        return m.ADC(m.Pin(n), chip=chip)
    return m.ADC(m.Pin(n), atten=m.ADC.ATTN_11DB)


def irq_trigger(rising):
    return m.Pin.IRQ_RISING if rising else m.Pin.IRQ_FALLING


def counter(unit, pin, rising, filter_ns):
    """A hardware pulse counter (the ESP32's PCNT unit ``unit``, machine.Counter in
    MicroPython 1.26+) on the input ``pin``: it counts the edges itself, none lost to a busy
    CPU; its glitch filter is at most ~12.8 us (1023 APB cycles), far too short for relay
    contacts."""
    c = getattr(m, "Counter", None)
    if c is None:
        raise ValueError("counter: this MicroPython has no machine.Counter (1.26 or newer)")
    return c(unit, src=pin, edge=c.RISING if rising else c.FALLING, filter_ns=filter_ns)
