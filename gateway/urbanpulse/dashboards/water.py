"""Water and flood: river levels against their alert level, rise rate, crossings."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from . import panels as p
from .influxql import location_variables
from .queries import latest, per_interval, points

UID = "urbanpulse-water"
DEVICE = ("district", "site", "device_id")


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Water and flood",
        "River levels per sensor, each against its alert level (registry threshold_cm).",
        variables=location_variables('"water"', ["district", "site", "device"]))
    return (
        board
        .with_panel(p.table_panel(
            "Levels now",
            [latest("kpi_water", ["water_level", "threshold_cm", "rise_cm_h", "above"], "device",
                    DEVICE)],
            p.CM, transformations=[p.merge_tables(), p.hide_time()]))
        .with_panel(p.timeseries_panel(
            "Water level and alert level, hourly",
            [points("kpi_water", ["water_level", "threshold_cm"], "device", ["device_id"])], p.CM))
        .with_panel(p.timeseries_panel(
            "Rise rate", [points("kpi_water", ["rise_cm_h"], "device", ["device_id"])],
            "suffix: cm/h", thresholds=p.bad_high(5.0, 20.0)))
        .with_panel(p.table_panel(
            "Threshold crossings",
            [points("kpi_water_crossing", ["direction", "water_level", "threshold_cm"], "device",
                    DEVICE)],
            p.CM, description="Each time a level went above (up) or back below (down) its "
            "alert level.", transformations=[p.merge_tables()]))
        .with_panel(p.timeseries_panel(
            "Water level readings",
            [per_interval("water", "water_level", "max", ["device_id"])], p.CM,
            description="Raw readings, highest per interval."))
    )
