"""InfluxQL query shapes the dashboards use, so every panel query reads the same way.

Hourly and daily KPI points are plotted as stored (no re-aggregation: a mean of decibels or of
AQIs would be wrong); raw telemetry is aggregated per `$__interval`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .influxql import tag_filter

# The variables that narrow each KPI level (district-level points carry no site or device).
LEVEL_VARIABLES: dict[str | None, tuple[str, ...]] = {
    "city": (),
    "district": ("district",),
    "site": ("district", "site"),
    "device": ("district", "site", "device"),
    None: ("district", "site", "device"),  # raw telemetry: every point has the device tags
}


def _where(level: str | None, variables: Sequence[str] | None, extra: str) -> str:
    parts = []
    if level is not None:
        parts.append(f"\"level\" = '{level}'")
    names = LEVEL_VARIABLES[level] if variables is None else tuple(variables)
    if names:
        parts.append(tag_filter(*names))
    if extra:
        parts.append(extra)
    parts.append("$timeFilter")
    return " AND ".join(parts)


def _group(tags: Sequence[str]) -> str:
    return ", ".join(f'"{t}"' for t in tags)


def points(
    measurement: str, fields: Sequence[str], level: str | None, by: Sequence[str], *,
    variables: Sequence[str] | None = None, extra: str = "",
) -> str:
    """The stored points of fields, one series per `by` tag combination."""
    cols = ", ".join(f'"{f}" AS "{f}"' for f in fields)
    return (f'SELECT {cols} FROM "{measurement}" WHERE {_where(level, variables, extra)} '
            f"GROUP BY {_group(by)}")


def per_interval(
    measurement: str, field: str, agg: str, by: Sequence[str], *, level: str | None = None,
    variables: Sequence[str] | None = None,
) -> str:
    """agg(field) per `$__interval` (raw telemetry), one series per `by` tag combination."""
    return (f'SELECT {agg}("{field}") AS "{field}" FROM "{measurement}" '
            f"WHERE {_where(level, variables, '')} "
            f"GROUP BY time($__interval), {_group(by)} fill(none)")


def latest(
    measurement: str, fields: Sequence[str], level: str | None, by: Sequence[str], *,
    variables: Sequence[str] | None = None, agg: str = "last",
) -> str:
    """The latest value of each field in the range (or with ``agg="sum"``, the total of
    counts stored per hour), one row per `by` tag combination."""
    cols = ", ".join(f'{agg}("{f}") AS "{f}"' for f in fields)
    return (f'SELECT {cols} FROM "{measurement}" WHERE {_where(level, variables, "")} '
            f"GROUP BY {_group(by)}")


def count_latest(
    measurement: str, field: str, condition: str, level: str | None, *,
    variables: Sequence[str] | None = None,
) -> str:
    """How many devices' latest `field` meets `condition` (e.g. `= true`)."""
    return (f'SELECT count("{field}") FROM (SELECT last("{field}") AS "{field}" '
            f'FROM "{measurement}" WHERE {_where(level, variables, "")} GROUP BY "device_id") '
            f'WHERE "{field}" {condition}')
