# Simulated sensors: always inside the vocabulary ranges, plausible daily patterns per kind.
import json

from mpytest import encode_sample, eq
from urbanpulse_fw import sim

# CONTRACT.md v1 vocabulary (with the gateway's bound on energy): field -> (min, max), None =
# unbounded; "bool" = true/false.
# tests/firmware/test_firmware_mpy.py checks it against gateway/urbanpulse/contract/vocabulary.py.
RANGES = {
    "pm1": (0, 2000), "pm25": (0, 2000), "pm10": (0, 2000), "no2": (0, 2000), "o3": (0, 2000),
    "co2": (0, 40000), "temperature": (-60, 85), "humidity": (0, 100), "pressure": (300, 1100),
    "laeq": (0, 160), "lamax": (0, 160), "lamin": (0, 160),
    "vehicles": (0, 100000), "period_s": (1, 86400), "speed_avg": (0, 300),
    "occupied": "bool", "lamp_on": "bool",
    "power": (0, 5000), "energy": (0, 1e12), "dim_level": (0, 100),
    "water_level": (-500, 5000),
    "soil_moisture": (0, 100), "soil_temperature": (-40, 80),
}

FIELDS = {
    "air": ("pm1", "pm25", "pm10", "temperature", "humidity", "pressure"),
    "noise": ("laeq", "lamax", "lamin"),
    "traffic": ("vehicles", "period_s", "speed_avg"),
    "parking": ("occupied",),
    "streetlight": ("lamp_on", "power", "dim_level", "energy"),
    "water": ("water_level",),
    "soil": ("soil_moisture", "soil_temperature"),
}
OPTIONAL = ("speed_avg",)  # no average speed in a period without vehicles

DAY_MS = 86400000
# Local midnights (UTC) in winter, spring, summer and autumn 2025.
MIDNIGHTS = (1736899200000, 1744675200000, 1752537600000, 1760486400000)


def check_sample(kind, fields):
    names = [f[0] for f in fields]
    eq(len(names), len(set(names)), "no duplicate keys")
    for name in FIELDS[kind]:
        assert name in names or name in OPTIONAL, "%s: %s missing" % (kind, name)
    for name, value in fields:
        assert name in FIELDS[kind], "%s: unexpected field %s" % (kind, name)
        rng = RANGES[name]
        if rng == "bool":
            assert value is True or value is False, "%s=%r is not a bool" % (name, value)
            continue
        assert type(value) in (int, float), "%s=%r is not a number" % (name, value)
        assert value == value and value not in (float("inf"), float("-inf")), name
        lo, hi = rng
        assert value >= lo and (hi is None or value <= hi), "%s=%r outside %r" % (name, value, rng)
    d = dict(fields)
    if kind == "noise":
        assert d["lamin"] <= d["laeq"] <= d["lamax"], d
    if kind == "air":
        assert d["pm1"] <= d["pm25"] <= d["pm10"], d
    return d


def run_day(kind, seed, start_ms, step_s, hours=24, keep=None):
    """Read a sensor every step_s for some hours, checking each sample; returns the
    (t, {field: value}) of the samples whose local hour is in one of the ranges of keep
    (the heap of the unix port is small)."""
    s = sim.make(kind, seed, step_s)
    out = []
    t = start_ms
    end = start_ms + int(hours * 3600000)
    while t < end:
        d = check_sample(kind, s.read(t))
        if keep is None or _in(hour_of(t), keep):
            out.append((t, d))
        t += int(step_s * 1000)
    return out


def _in(h, ranges):
    return any(lo <= h < hi for lo, hi in ranges)


def hour_of(t):
    return (t // 1000 % 86400) / 3600


def mean(xs):
    return sum(xs) / len(xs) if xs else 0


def test_all_kinds_in_range_over_days_of_every_season():
    for kind in sim.KINDS:
        for i, midnight in enumerate(MIDNIGHTS):
            run_day(kind, 1000 + i, midnight, 120, keep=())


def test_all_kinds_in_range_at_fast_sampling():
    for kind in sim.KINDS:
        run_day(kind, 7, MIDNIGHTS[2] + 8 * 3600000, 0.2, hours=0.05, keep=())


def test_unknown_kind_rejected():
    try:
        sim.make("weather", 1, 5)
    except ValueError:
        return
    raise AssertionError("no error")


def test_samples_encode_to_valid_json():
    for kind in sim.KINDS:
        s = sim.make(kind, 3, 5)
        fields = s.read(MIDNIGHTS[0] + 3600000)
        doc = json.loads(encode_sample(MIDNIGHTS[0], fields))
        eq(sorted(doc.keys()), sorted(["t"] + [f[0] for f in fields]), kind)


def test_seeded_per_device():
    for kind in ("air", "noise", "water"):
        a = run_day(kind, 1, MIDNIGHTS[0], 600, hours=2)
        b = run_day(kind, 1, MIDNIGHTS[0], 600, hours=2)
        c = run_day(kind, 2, MIDNIGHTS[0], 600, hours=2)
        eq(a, b, kind + ": same seed, same values")
        assert a != c, kind + ": another seed, other values"


def test_air_rush_hour_peak():
    rush, midday = [], []
    for seed in range(5):
        for t, d in run_day("air", seed, MIDNIGHTS[1], 300, keep=((7.5, 8.5), (12.5, 13.5))):
            h = hour_of(t)
            if 7.5 <= h < 8.5:
                rush.append(d["pm25"])
            elif 12.5 <= h < 13.5:
                midday.append(d["pm25"])
    assert mean(rush) > 2 * mean(midday), (mean(rush), mean(midday))


def test_air_warmer_afternoon_and_summer():
    day = run_day("air", 4, MIDNIGHTS[0], 600, keep=((3, 5), (14, 16)))
    night = mean([d["temperature"] for t, d in day if 3 <= hour_of(t) < 5])
    afternoon = mean([d["temperature"] for t, d in day if 14 <= hour_of(t) < 16])
    assert afternoon > night + 5, (night, afternoon)
    summer = run_day("air", 4, MIDNIGHTS[2], 600, keep=((3, 5), (14, 16)))
    winter_t = mean([d["temperature"] for t, d in day])
    assert mean([d["temperature"] for t, d in summer]) > winter_t + 10


def test_noise_quieter_at_night():
    night, day = [], []
    for t, d in run_day("noise", 5, MIDNIGHTS[1], 120, keep=((2, 5), (15, 18))):
        h = hour_of(t)
        if 2 <= h < 5:
            night.append(d["laeq"])
        elif 15 <= h < 18:
            day.append(d["laeq"])
    assert mean(day) > mean(night) + 10, (mean(night), mean(day))


def test_traffic_rush_hours_and_period():
    night, rush = [], []
    for seed in range(3):
        for t, d in run_day("traffic", seed, MIDNIGHTS[1], 60, keep=((2, 4), (7.5, 8.5))):
            eq(d["period_s"], 60, "period = sampling interval")
            assert type(d["vehicles"]) is int, "a count"
            h = hour_of(t)
            if 2 <= h < 4:
                night.append(d["vehicles"])
            elif 7.5 <= h < 8.5:
                rush.append(d["vehicles"])
    assert mean(rush) > 4 * mean(night), (mean(night), mean(rush))
    for _t, d in run_day("traffic", 1, MIDNIGHTS[1], 0.2, hours=0.01):
        eq(d["period_s"], 1, "never below the contract's 1 s")


def test_parking_flips_rarely_and_busier_by_day():
    flips, day, night = 0, [], []
    for seed in range(6):
        prev = None
        for t, d in run_day("parking", seed, MIDNIGHTS[1], 60):
            if prev is not None and d["occupied"] != prev:
                flips += 1
            prev = d["occupied"]
            h = hour_of(t)
            (day if 10 <= h < 18 else night if h < 5 else []).append(1 if prev else 0)
    assert flips < 6 * 40, "at most a few dozen changes a day: %d" % flips
    assert flips > 0, "but it does change"
    assert mean(day) > mean(night) + 0.2, (mean(night), mean(day))


def test_streetlight_on_at_night_off_by_day():
    for midnight in MIDNIGHTS:
        for t, d in run_day("streetlight", 3, midnight, 600, keep=((1, 4), (22.5, 24), (10, 15))):
            h = hour_of(t)
            if 1 <= h < 4 or h >= 22.5:
                assert d["lamp_on"], "off at night: %r" % h
                assert 15 <= d["power"] <= 130 and d["dim_level"] in (60, 100), d
            elif 10 <= h < 15:
                assert not d["lamp_on"], "on by day: %r" % h
                eq((d["power"], d["dim_level"]), (0.5, 0), "standby")


def test_streetlight_energy_counts_power_times_time():
    s = sim.make("streetlight", 9, 60)
    t = MIDNIGHTS[3]
    d = dict(s.read(t))
    first = d["energy"]
    assert first > 1000, "a meter with history"
    expected = 0.0
    last = first
    for _ in range(24 * 60 * 2):  # two days, one reading a minute
        expected += d["power"] * 60 / 3600  # the previous interval's power
        t += 60000
        d = dict(s.read(t))
        assert d["energy"] >= last, "meter went back: %r < %r" % (d["energy"], last)
        last = d["energy"]
    got = last - first
    assert abs(got - expected) < 0.05 + expected * 0.001, (got, expected)
    assert 500 < got < 5000, "two nights of a 40-120 W lamp: %r Wh" % got


def test_streetlight_energy_monotonic_with_irregular_steps():
    s = sim.make("streetlight", 11, 5)
    t = MIDNIGHTS[0] + 20 * 3600000
    last = -1.0
    for i in range(3000):
        t += (i * 7919) % 13000 + 1  # 1 ms .. 13 s
        e = dict(s.read(t))["energy"]
        assert e >= last, (e, last)
        last = e


def test_water_and_soil_drift_slowly():
    s = sim.make("water", 2, 60)
    steps = []
    prev = None
    for i in range(1440):
        level = dict(s.read(MIDNIGHTS[1] + i * 60000))["water_level"]
        if prev is not None:
            steps.append(abs(level - prev))
        prev = level
    steps.sort()
    assert steps[len(steps) // 2] < 3, "median change a minute: %r cm" % steps[len(steps) // 2]
    s = sim.make("soil", 2, 600)
    moist = [dict(s.read(MIDNIGHTS[2] + i * 600000))["soil_moisture"] for i in range(144)]
    assert max(moist) - min(moist) < 25, "soil moisture moves slowly"
