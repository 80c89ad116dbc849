"""InfluxQL targets, the data source and template variables.

The foundation SDK has no InfluxDB query type, so ``InfluxQL`` is a small builder producing the
target JSON Grafana's InfluxDB data source stores for a raw InfluxQL query. What Grafana does
to a query before sending it is in interpolation.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

from .interpolation import ALL_VALUE, VARIABLE_TAGS

DATASOURCE_UID = "urbanpulse-influx"
DATASOURCE_TYPE = "influxdb"
DATASOURCE_NAME = "UrbanPulse InfluxDB"
DATASOURCE = dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQLTarget(cogvariants.Dataquery):
    """One raw InfluxQL query of a panel (Grafana's InfluxDB target model)."""

    def __init__(self, ref_id: str, query: str, result_format: ResultFormat, alias: str) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self, query: str, ref_id: str = "A", result_format: ResultFormat = "time_series",
        alias: str = "",
    ) -> None:
        self._target = InfluxQLTarget(ref_id, query, result_format, alias)

    def build(self) -> cogvariants.Dataquery:
        return self._target


# -- template variables --------------------------------------------------------------------


def tag_filter(*variables: str) -> str:
    """`"district" =~ /^$district$/ AND ...` for the named dashboard variables."""
    return " AND ".join(f'"{VARIABLE_TAGS[v]}" =~ /^${v}$/' for v in variables)


def tag_variable(
    name: str, label: str, source: str, depends_on: Sequence[str] = (),
) -> dash.QueryVariable:
    """A multi-value variable listing a tag's values (`SHOW TAG VALUES`) in `source` (a quoted
    measurement or a /regex/), narrowed by the variables before it."""
    query = f'SHOW TAG VALUES FROM {source} WITH KEY = "{VARIABLE_TAGS[name]}"'
    if depends_on:
        query += f" WHERE {tag_filter(*depends_on)}"
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def location_variables(source: str, names: Sequence[str]) -> list[dash.QueryVariable]:
    """district, then site, then device (each narrowed by those before it) from `source`."""
    labels = {"district": "District", "site": "Site", "device": "Device"}
    return [tag_variable(n, labels[n], source, names[:i]) for i, n in enumerate(names)]
