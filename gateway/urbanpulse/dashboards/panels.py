"""Shared panel pieces: Grafana unit ids, threshold colour scales and panel factories.

Every dashboard module builds its panels with these, so units, colours and layout stay
consistent across the city's dashboards.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from .influxql import DATASOURCE, InfluxQL, ResultFormat

# Grafana unit ids (grafana_foundation_sdk.models.units mirrors Grafana 11's list).
UGM3 = units.MicrogramPerCubicMeter  # "conμgm3"
PPM = units.PartsPerMillion
DB = units.Decibel
CELSIUS = units.Celsius
HUMIDITY = units.Humidity
HPA = units.Hectopascals
VPH = "suffix: veh/h"  # Grafana custom unit: a suffix
VEHICLES = units.Short
PERCENT_UNIT = units.PercentUnit  # 0..1 shown as %
WATT_HOUR = units.WattHour
WATT = units.Watt
HOURS = units.Hours
CM = "suffix: cm"  # Grafana has no centimetre length unit
VOLT = units.Volt
DBM = units.DecibelMilliWatt
BYTES = units.BytesIEC
SECONDS = units.Seconds
KMH = units.KilometersPerHour
COUNT = units.Short
AQI = units.NoUnit


def steps(base: str, *steps_: tuple[float, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=None, color=base)]
        + [dm.Threshold(value=value, color=color) for value, color in steps_]
    )


# US EPA AQI category colours (AirNow): Good .. Hazardous, at each category's lower bound.
AQI_COLOURS = (
    (0, "Good", "#00E400"),
    (51, "Moderate", "#FFFF00"),
    (101, "Unhealthy for Sensitive Groups", "#FF7E00"),
    (151, "Unhealthy", "#FF0000"),
    (201, "Very Unhealthy", "#8F3F97"),
    (301, "Hazardous", "#7E0023"),
)


def aqi_thresholds() -> dash.ThresholdsConfig:
    return steps(AQI_COLOURS[0][2], *((float(lo), colour) for lo, _, colour in AQI_COLOURS[1:]))


def good_high(warn: float, ok: float) -> dash.ThresholdsConfig:
    """Red below warn, orange below ok, green above (availability, completeness)."""
    return steps("red", (warn, "orange"), (ok, "green"))


def bad_high(warn: float, bad: float) -> dash.ThresholdsConfig:
    """Green below warn, orange below bad, red above (noise, faults, occupancy)."""
    return steps("green", (warn, "orange"), (bad, "red"))


def targets(queries: Sequence[str], result_format: ResultFormat, aliases: Sequence[str] = (),
            ) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    refs = "ABCDEFGHIJ"
    return [
        InfluxQL(q, refs[i], result_format, aliases[i] if i < len(aliases) else "")
        for i, q in enumerate(queries)
    ]


def stat_panel(
    title: str, query: str, unit: str, thresholds: dash.ThresholdsConfig, *,
    description: str = "", decimals: float = 0, width: int = 4, height: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([query], "time_series"))
        .unit(unit)
        .decimals(decimals)
        .thresholds(thresholds)
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value("no data")
        .span(width)
        .height(height)
    )


def timeseries_panel(
    title: str, queries: Sequence[str], unit: str, *, description: str = "",
    thresholds: dash.ThresholdsConfig | None = None, aliases: Sequence[str] = (),
    width: int = 12, height: int = 8, bars: bool = False, decimals: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries, "time_series", aliases))
        .unit(unit)
        .span(width)
        .height(height)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.BOTTOM).show_legend(True)
                .calcs(["mean", "max", "lastNotNull"]))
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                 .sort(cm.SortOrder.DESCENDING))
        .line_width(1)
        .fill_opacity(10)
        .span_nulls(False)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def table_panel(
    title: str, queries: Sequence[str], unit: str = units.NoUnit, *, description: str = "",
    thresholds: dash.ThresholdsConfig | None = None, width: int = 12, height: int = 8,
    transformations: Sequence[dm.DataTransformerConfig] = (),
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries, "table"))
        .unit(unit)
        .span(width)
        .height(height)
        .show_header(True)
        .align(cm.FieldTextAlignment.AUTO)
        .inspect(False)
    )
    if thresholds is not None:
        # Colour the cells by the thresholds (the AQI column in EPA colours, for example).
        panel = panel.thresholds(thresholds).color_scheme(
            dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)).cell_options(
            cm.TableColoredBackgroundCellOptions())
    else:
        panel = panel.cell_options(cm.TableAutoCellOptions())
    for transformation in transformations:
        panel = panel.with_transformation(transformation)
    return panel


def merge_tables() -> dm.DataTransformerConfig:
    """One table out of a query's per-device frames (Grafana's "merge" transformation)."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def hide_time() -> dm.DataTransformerConfig:
    """Latest-value tables: the Time column of `last()` is the point's time, not useful."""
    return dm.DataTransformerConfig(
        id_val="organize", options={"excludeByName": {"Time": True}})


def new_dashboard(
    uid: str, title: str, description: str, *, time_from: str = "now-24h",
    variables: Sequence[dash.QueryVariable] = (),
) -> dash.Dashboard:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["urbanpulse"])
        .editable()
        .timezone("browser")
        .time(time_from, "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(dash.DashboardLink("UrbanPulse").type(dm.DashboardLinkType.DASHBOARDS).tags(["urbanpulse"])
              .as_dropdown(True).include_vars(False).keep_time(True))
    )
    for variable in variables:
        board = board.with_variable(variable)
    return board


def join_by_device() -> dm.DataTransformerConfig:
    """One row per board out of several queries (Grafana's "join by field")."""
    return dm.DataTransformerConfig(
        id_val="joinByField", options={"byField": "device_id", "mode": "outer"})
