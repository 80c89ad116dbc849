"""Noise: hourly LAeq (energetic means), Lden per day (EU END) and the loudest moments."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from . import panels as p
from .influxql import location_variables
from .queries import latest, points

UID = "urbanpulse-noise"


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Noise",
        "Hourly LAeq (energetic mean, never the arithmetic mean of decibels) and Lden per day.",
        time_from="now-7d",
        variables=location_variables('"noise"', ["district", "site", "device"]))
    return (
        board
        .with_panel(p.timeseries_panel(
            "LAeq per hour", [points("kpi_noise_hourly", ["laeq"], "device", ["device_id"])],
            p.DB, thresholds=p.bad_high(55.0, 65.0), decimals=1))
        .with_panel(p.timeseries_panel(
            "LAmax per hour", [points("kpi_noise_hourly", ["lamax"], "device", ["device_id"])],
            p.DB, decimals=1))
        .with_panel(p.timeseries_panel(
            "Lden per day", [points("kpi_noise_daily", ["lden"], "device", ["device_id"])],
            p.DB, description="Day-evening-night level, local days (EU END).",
            thresholds=p.bad_high(55.0, 65.0), bars=True, decimals=1))
        .with_panel(p.table_panel(
            "Latest day per board",
            [latest("kpi_noise_daily", ["lden", "lday", "levening", "lnight"], "device",
                    ["district", "site", "device_id"])],
            p.DB, thresholds=p.bad_high(55.0, 65.0),
            transformations=[p.merge_tables(), p.hide_time()]))
    )
