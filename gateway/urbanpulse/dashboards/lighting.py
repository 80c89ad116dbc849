"""Street lighting and energy: energy per lamp per day, burning hours and lamp faults."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from . import panels as p
from .influxql import location_variables
from .queries import per_interval, points

UID = "urbanpulse-lighting"


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Street lighting and energy",
        "Energy per lamp per day (meter differences, robust to resets), burning hours, and "
        "faults: lamps on in daylight or off at night.", time_from="now-7d",
        variables=location_variables('"streetlight"', ["district", "site", "device"]))
    return (
        board
        .with_panel(p.timeseries_panel(
            "Energy per lamp per day",
            [points("kpi_streetlight_daily", ["energy_wh"], "device", ["device_id"])],
            p.WATT_HOUR, bars=True))
        .with_panel(p.timeseries_panel(
            "Burning hours per day",
            [points("kpi_streetlight_daily", ["burning_h"], "device", ["device_id"])],
            p.HOURS, bars=True, decimals=1))
        .with_panel(p.timeseries_panel(
            "Faulty lamps per district per day",
            [points("kpi_streetlight_daily", ["faults"], "district", ["district"])],
            p.COUNT, thresholds=p.bad_high(1.0, 5.0), bars=True))
        .with_panel(p.table_panel(
            "Fault hours",
            [points("kpi_streetlight_hourly", ["day_on_h", "night_off_h"], "device",
                    ["district", "device_id"], extra='"fault" = true')],
            p.HOURS, description="Hours in which a lamp burned in daylight or was off at "
            "night.", transformations=[p.merge_tables()]))
        .with_panel(p.timeseries_panel(
            "Lamp power", [per_interval("streetlight", "power", "mean", ["device_id"])],
            p.WATT, description="Raw readings, mean per interval."))
    )
