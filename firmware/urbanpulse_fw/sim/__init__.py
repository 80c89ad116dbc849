# Simulated sensors with plausible daily patterns, one module per device kind; only the kinds
# a board has are loaded (RAM). Each sensor has its own seeded generator, so boards differ but
# a board is reproducible. Sensor.read(t) returns (field, value) pairs inside the vocabulary
# ranges of CONTRACT.md; patterns follow the local hour of the sample's timestamp.
# The device kinds: the firmware's one list (tests/firmware/test_kinds.py checks it against
# the gateway's), here because this package is small: config.py and sensors.py load it cheaply.
KINDS = ("air", "noise", "traffic", "parking", "streetlight", "water", "soil")


def make(kind, seed, interval_s, offset=0):
    """A simulated sensor of this kind; offset = local time - UTC in seconds."""
    if kind not in KINDS:
        raise ValueError("no simulated sensor of kind %r" % kind)
    return __import__("urbanpulse_fw.sim." + kind, None, None, ("Sensor",)).Sensor(
        seed, interval_s, offset)
