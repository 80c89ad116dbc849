"""Telemetry examples of CONTRACT.md v1 that the contract tests share."""

from __future__ import annotations

import json
from typing import Any

NOW = 1_763_700_000_000


def message(*samples: dict[str, Any], **envelope: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "boot": 7, "seq": 1042, "samples": list(samples)}
    body.update(envelope)
    return json.dumps(body).encode()


# One valid sample per kind, with every field of that kind's measurement.
VALID_BY_KIND: dict[str, dict[str, Any]] = {
    "air": {
        "pm1": 8.0,
        "pm25": 12.4,
        "pm10": 20,
        "no2": 31.5,
        "o3": 60.2,
        "co2": 415,
        "temperature": 21.3,
        "humidity": 48.0,
        "pressure": 1013.2,
    },
    "noise": {"laeq": 61.2, "lamax": 78.9, "lamin": 44.0},
    "traffic": {"vehicles": 42, "period_s": 60, "speed_avg": 37.5},
    "parking": {"occupied": True},
    "streetlight": {"lamp_on": False, "power": 0.4, "energy": 123456.7, "dim_level": 0},
    "water": {"water_level": -12.5},
    "soil": {"soil_moisture": 33.3, "soil_temperature": -3.5},
}
