"""What Grafana does to an InfluxQL query before sending it: `$timeFilter`, `$__interval` and
the dashboard variables. No SDK import here, so the demo's live view starts fast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# "All" is sent as ".*" so `=~ /^$site$/` also matches points without the tag (no site).
ALL_VALUE = ".*"
VARIABLE_TAGS = {"district": "district", "site": "site", "device": "device_id"}

_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}/])")


def _regex_escape(value: str) -> str:
    # Grafana's InfluxDB data source escapes multi-value selections for regex use.
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_variable(values: Sequence[str] | None) -> str:
    """A variable's value as Grafana writes it inside `/^...$/`: None means "All"."""
    if values is None:
        return ALL_VALUE
    if len(values) == 1:
        return _regex_escape(values[0])
    return "(" + "|".join(_regex_escape(v) for v in values) + ")"


def time_filter(from_ms: int, to_ms: int) -> str:
    """Grafana's `$timeFilter` for an absolute range."""
    return f"time >= {from_ms}ms and time <= {to_ms}ms"


def interpolate(
    query: str,
    *,
    time_filter_sql: str,
    interval: str = "1h",
    variables: Mapping[str, Sequence[str] | None] | None = None,
) -> str:
    """Replace `$timeFilter`/`$__timeFilter`, `$__interval` and the dashboard variables
    (missing ones count as "All"). Unknown `$names` are left for InfluxDB to refuse."""
    values = dict.fromkeys(VARIABLE_TAGS, None) | dict(variables or {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in ("timeFilter", "__timeFilter"):
            return time_filter_sql
        if name == "__interval":
            return interval
        if name in values:
            return format_variable(values[name])
        return match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, query)
