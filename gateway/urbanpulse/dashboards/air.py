"""Air quality: AQI (US EPA) per board and district, and the pollutants behind it."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from . import panels as p
from .influxql import location_variables
from .queries import latest, per_interval, points

UID = "urbanpulse-air"
DEVICE = ("district", "site", "device_id")


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Air quality",
        "US EPA AQI (24-hour means, 2024 PM2.5 breakpoints) and hourly pollutant means.",
        variables=location_variables('"air_quality"', ["district", "site", "device"]))
    return (
        board
        .with_panel(p.table_panel(
            "AQI now, per board",
            [latest("kpi_aqi", ["aqi", "category", "dominant", "pm25_24h", "pm10_24h", "hours",
                                "valid"], "device", DEVICE)],
            p.AQI, description="Latest hour's 24-hour AQI; valid when >= 18 hours had data.",
            thresholds=p.aqi_thresholds(), transformations=[p.merge_tables(), p.hide_time()]))
        .with_panel(p.timeseries_panel(
            "AQI by district", [points("kpi_aqi", ["aqi"], "district", ["district"])], p.AQI,
            description="Worst board of each district, hourly.", thresholds=p.aqi_thresholds()))
        .with_panel(p.timeseries_panel(
            "PM2.5, hourly mean", [points("kpi_air_hourly", ["pm25"], "device", ["device_id"])],
            p.UGM3, thresholds=p.steps("green", (15.0, "orange"), (35.5, "red"))))
        .with_panel(p.timeseries_panel(
            "PM10, hourly mean", [points("kpi_air_hourly", ["pm10"], "device", ["device_id"])],
            p.UGM3, thresholds=p.steps("green", (45.0, "orange"), (155.0, "red"))))
        .with_panel(p.timeseries_panel(
            "NO2 and O3, hourly mean",
            [points("kpi_air_hourly", ["no2", "o3"], "device", ["device_id"])], p.UGM3))
        .with_panel(p.timeseries_panel(
            "PM2.5 readings", [per_interval("air_quality", "pm25", "mean", ["device_id"])],
            p.UGM3, description="Raw readings, mean per interval."))
    )
