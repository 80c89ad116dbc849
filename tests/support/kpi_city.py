"""A small known city for the KPI engine's tests: its registry, and a day and a half of raw
telemetry (two local days, across local midnight) with the truths the tests check against."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from support.services import Services, influx_write
from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.contract.vocabulary import VOCABULARY
from urbanpulse.registry.devices import Registry

H = 3_600_000
M = 60_000

AMS = ZoneInfo("Europe/Amsterdam")

REGISTRY = """device_id,kind,district,site,lat,lon,interval_s,threshold_cm
air-n-01,air,north,Town Hall,52.37,4.89,600,
air-n-02,air,north,Town Hall,52.37,4.89,600,
noise-n-01,noise,north,Town Hall,52.37,4.89,600,
park-c-01,parking,centre,Market,,,300,
park-c-02,parking,centre,Market,,,300,
traf-c-01,traffic,centre,Ring,,,300,
lamp-s-01,streetlight,south,,52.3676,4.9041,600,
water-s-01,water,south,Harbour,,,600,150
"""

NOW = int(datetime(2026, 6, 10, 23, 30, tzinfo=UTC).timestamp() * 1000)  # 01:30 local, 11 June
START = NOW - 27 * H - 30 * M  # 2026-06-09T20:00Z: the AQI of 20Z needs 23 hours before
DAY10 = int(datetime(2026, 6, 10, tzinfo=AMS).timestamp() * 1000)  # local midnight
DAY11 = DAY10 + 24 * H


def local_hour(t: int) -> float:
    d = datetime.fromtimestamp(t / 1000, AMS)
    return d.hour + d.minute / 60


def lamp_on(t: int) -> bool:
    """Lamps burn 22:30-05:00 local (sunset 22:0x, sunrise 05:1x: right, within the 30 min
    margin) and 12:00-13:00 local (a daylight fault)."""
    h = local_hour(t)
    return h >= 22.5 or h < 5 or 12 <= h < 13


@dataclass
class City:
    raw: dict[str, list[tuple[int, dict[str, Any]]]]
    meter: dict[int, float]  # the lamp's true cumulative energy at each reading
    lost_wh: float  # used between the last reading and the reset: no reading ever showed it


def make_city() -> City:
    rng = random.Random(7)
    raw: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    def every(step_ms: int, stop: int = NOW) -> range:
        return range(START, stop, step_ms)

    for device_id, base in (("air-n-01", 20.0), ("air-n-02", 12.0)):
        stop = NOW - 40 * M if device_id == "air-n-02" else NOW  # goes silent at 22:50Z
        rows = []
        for t in every(10 * M, stop):
            # air-n-02 misses half its samples in the hour 21Z (23:00 local, 10 June).
            if device_id == "air-n-02" and NOW - 150 * M <= t < NOW - 90 * M and t % (20 * M):
                continue
            rows.append((t, {"pm25": round(base + rng.uniform(-5, 5), 1),
                             "pm10": round(2 * base + rng.uniform(-5, 5), 1),
                             "temperature": round(15 + rng.uniform(0, 5), 2)}))
        raw[device_id] = rows
    raw["noise-n-01"] = [(t, {"laeq": round(50 + 15 * rng.random(), 1),
                              "lamax": round(70 + 10 * rng.random(), 1),
                              "lamin": round(35 + 5 * rng.random(), 1)})
                         for t in every(10 * M)]
    for device_id in ("park-c-01", "park-c-02"):
        raw[device_id] = [(t, {"occupied": rng.random() < 0.6}) for t in every(5 * M)]
    raw["traf-c-01"] = [(t, {"vehicles": float(rng.randint(0, 40)), "period_s": 300.0})
                        for t in every(5 * M)]
    # The lamp's meter counts 100 W while on; it is reset at 02:05 local on 10 June.
    reset_at = int(datetime(2026, 6, 10, 2, 5, tzinfo=AMS).timestamp() * 1000)
    cum = offset = lost = 0.0
    meter: dict[int, float] = {}
    rows = []
    previous: int | None = None
    for t in every(10 * M):
        if previous is not None and lamp_on(previous):
            cum += 100 * (t - previous) / H
        if previous is not None and previous < reset_at <= t:
            offset = cum - 100 * (t - reset_at) / H if lamp_on(previous) else cum
            lost = 100 * (reset_at - previous) / H if lamp_on(previous) else 0.0
        meter[t] = cum
        rows.append((t, {"lamp_on": lamp_on(t), "power": 100.0 if lamp_on(t) else 0.0,
                         "energy": round(cum - offset, 6)}))
        previous = t
    raw["lamp-s-01"] = rows
    # A tidal river: through the alert level (150 cm) and back every 3 hours.
    raw["water-s-01"] = [
        (t, {"water_level": round(140 + 20 * math.sin(2 * math.pi * (t - START) / (3 * H)), 2)})
        for t in every(10 * M)]
    return City(raw, meter, lost)


def store(services: Services, registry: Registry,
          rows: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
    lines = []
    for device_id, samples in rows.items():
        registered = registry.get(device_id)
        assert registered is not None
        for t, fields in samples:
            by_m: dict[str, dict[str, Any]] = {}
            for k, v in fields.items():
                by_m.setdefault(VOCABULARY[k].measurement, {})[k] = v
            for m, f in by_m.items():
                lines.append(encode_point(m, registered.device.tags, f, t))
    for i in range(0, len(lines), 5000):
        influx_write(services, "\n".join(lines[i : i + 5000]))
