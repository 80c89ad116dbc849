"""The contract's vocabulary (CONTRACT.md v1): every quantity a board may report.

This table is the single source of truth for field names, units, valid ranges and the
measurement each field is stored in. The message validator, the line-protocol encoder and
the README's schema section are all derived from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

CONTRACT_VERSION = 1
# Version 2 (sealed telemetry): "v" of a message with a MAC, and its "prev" (contract/sealed.py).
SEALED_VERSION = 2
PREV_PATTERN = r"^[0-9a-f]{64}$"

# 3 to 32 characters of a-z 0-9 -, starting with a letter (CONTRACT.md, "Topics").
DEVICE_ID_PATTERN = r"^[a-z][a-z0-9-]{2,31}$"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)

MAX_SAMPLES_PER_MESSAGE = 100
MAX_PAYLOAD_BYTES = 64 * 1024
# A retained status is a few dozen bytes: anything larger is refused before it is parsed
# (so is a command's answer, MAX_ACK_BYTES).
MAX_STATUS_BYTES = 1024
# An energy meter's reading, Wh. CONTRACT.md says only ">= 0": a terawatt-hour is far beyond
# any lamp's meter (a PZEM-004T counts to 10^7 Wh), and a bound keeps sums over a district
# finite (one reading of 1.7e308 once made every KPI run fail).
MAX_ENERGY_WH = 1e12

# Plausible sample timestamps: nothing before 2020 (a board that never synced its clock
# stamps 2000-01-01 or 1970), nothing far in the future (see validation settings).
# Hours are UTC hours, in ms (KPI windows, device_integrity, receipts).
HOUR_MS = 3_600_000
MIN_TIMESTAMP_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z

FieldType = Literal["float", "bool"]


@dataclass(frozen=True)
class Quantity:
    field: str
    measurement: str
    unit: str
    type: FieldType = "float"
    minimum: float = -math.inf
    maximum: float = math.inf


def _q(
    measurement: str, unit: str, lo: float, hi: float, *fields: str
) -> list[Quantity]:
    return [Quantity(f, measurement, unit, "float", lo, hi) for f in fields]


QUANTITIES: tuple[Quantity, ...] = (
    *_q("air_quality", "ug/m3", 0, 2000, "pm1", "pm25", "pm10", "no2", "o3"),
    *_q("air_quality", "ppm", 0, 40000, "co2"),
    *_q("air_quality", "degC", -60, 85, "temperature"),
    *_q("air_quality", "%", 0, 100, "humidity"),
    *_q("air_quality", "hPa", 300, 1100, "pressure"),
    *_q("noise", "dB(A)", 0, 160, "laeq", "lamax", "lamin"),
    *_q("traffic", "count", 0, 100000, "vehicles"),
    *_q("traffic", "s", 1, 86400, "period_s"),
    *_q("traffic", "km/h", 0, 300, "speed_avg"),
    Quantity("occupied", "parking", "bool", "bool"),
    Quantity("lamp_on", "streetlight", "bool", "bool"),
    *_q("streetlight", "W", 0, 5000, "power"),
    *_q("streetlight", "Wh", 0, MAX_ENERGY_WH, "energy"),
    *_q("streetlight", "%", 0, 100, "dim_level"),
    *_q("water", "cm", -500, 5000, "water_level"),
    *_q("soil", "%", 0, 100, "soil_moisture"),
    *_q("soil", "degC", -40, 80, "soil_temperature"),
)

VOCABULARY: dict[str, Quantity] = {q.field: q for q in QUANTITIES}

MEASUREMENTS: tuple[str, ...] = tuple(dict.fromkeys(q.measurement for q in QUANTITIES))

# Device kinds a registry entry may name, and the measurements a board of that kind reports.
KIND_MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "air": ("air_quality",),
    "noise": ("noise",),
    "traffic": ("traffic",),
    "parking": ("parking",),
    "streetlight": ("streetlight",),
    "water": ("water",),
    "soil": ("soil",),
}
KINDS: tuple[str, ...] = tuple(KIND_MEASUREMENTS)

# Storage measurements the gateway writes besides the vocabulary's.
DEVICE_INFO_MEASUREMENT = "device_info"
GATEWAY_STATS_MEASUREMENT = "gateway_stats"

# Board health (city/{id}/health) and liveness (city/{id}/status, timeouts), stored by the
# gateway; README "InfluxDB schema as built" documents the fields.
DEVICE_HEALTH_MEASUREMENT = "device_health"
DEVICE_STATUS_MEASUREMENT = "device_status"
# Sealed telemetry (v2), per device and UTC hour of arrival (integer counts): messages whose
# MAC verified, of those the gaps and forks in the chain, and the messages refused.
DEVICE_INTEGRITY_MEASUREMENT = "device_integrity"
DEVICE_INTEGRITY_FIELDS: tuple[str, ...] = ("verified", "gaps", "forks", "bad_mac", "replayed")
# The hourly receipts (CONTRACT.md v2), per district at the hour's start: leaves, root, sig.
INTEGRITY_RECEIPT_MEASUREMENT = "integrity_receipt"
# A board's answers to commands (city/{id}/cmd/ack), stored as they arrive.
DEVICE_COMMAND_MEASUREMENT = "device_command"
MAX_ACK_BYTES = 1024

HealthFieldType = Literal["float", "str"]


@dataclass(frozen=True)
class HealthField:
    field: str
    unit: str
    type: HealthFieldType = "float"
    minimum: float = -math.inf
    maximum: float = math.inf
    max_length: int = 0  # strings only


# What the chip tells (power, wdt, deepsleep; hard, soft, unknown from older firmware), what
# the firmware meant (reboot and config commands, a config rolled back, a fatal error, out
# of memory, a start that failed, an update installed over the air), or a reset it did not
# mean (crash: a panic).
RESET_CAUSES: tuple[str, ...] = (
    "power", "hard", "wdt", "deepsleep", "soft", "unknown",
    "reboot", "config", "rollback", "fatal", "memory", "start", "crash", "ota",
)

# Every field of a health message but `t` (optional, each). Numbers are stored as floats.
HEALTH_FIELDS: dict[str, HealthField] = {
    f.field: f
    for f in (
        HealthField("battery", "V", "float", 0, 6),
        HealthField("rssi", "dBm", "float", -130, 0),
        HealthField("heap_free", "bytes", "float", 0),
        HealthField("uptime", "s", "float", 0),
        HealthField("buffered", "samples", "float", 0),
        HealthField("dropped", "samples", "float", 0),
        HealthField("fw", "", "str", max_length=32),
        HealthField("reset_cause", "", "str", max_length=16),  # one of RESET_CAUSES
        HealthField("faults", "", "str", max_length=1024),  # "sensor:fault,sensor:fault"
        HealthField("config_error", "", "str", max_length=1024),
    )
}
# Derived by the gateway: how many entries `faults` lists.
HEALTH_FAULT_COUNT = "fault_count"

# device_status: why a device is online or offline now.
LIVENESS_STATES: tuple[str, ...] = ("online", "offline")
LIVENESS_REASONS: tuple[str, ...] = ("status", "will", "timeout", "telemetry")
