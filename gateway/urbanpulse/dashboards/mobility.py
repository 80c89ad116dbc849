"""Mobility: traffic flow (vehicles per hour) and parking occupancy."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from . import panels as p
from .influxql import location_variables
from .queries import latest, per_interval, points

UID = "urbanpulse-mobility"


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Mobility",
        "Traffic flow (sum(vehicles) * 3600 / sum(period_s)) and time-weighted parking "
        "occupancy.",
        variables=location_variables("/^(traffic|parking)$/", ["district", "site"]))
    return (
        board
        .with_panel(p.timeseries_panel(
            "Traffic flow by district",
            [points("kpi_traffic_hourly", ["flow_vph"], "district", ["district"])], p.VPH))
        .with_panel(p.timeseries_panel(
            "Vehicles per day by district",
            [points("kpi_traffic_daily", ["vehicles"], "district", ["district"])],
            p.VEHICLES, bars=True))
        .with_panel(p.timeseries_panel(
            "Parking occupancy by district",
            [points("kpi_parking_hourly", ["occupancy"], "district", ["district"])],
            p.PERCENT_UNIT, thresholds=p.bad_high(0.85, 0.95)))
        .with_panel(p.table_panel(
            "Parking now, per site",
            [latest("kpi_parking_now", ["free", "occupied", "reporting", "occupancy"], "site",
                    ["district", "site"])],
            description="Bays reporting now; occupancy = occupied / reporting.",
            transformations=[p.merge_tables(), p.hide_time()]))
        .with_panel(p.timeseries_panel(
            "Average speed", [per_interval("traffic", "speed_avg", "mean", ["device_id"],
                                           variables=("district", "site"))],
            p.KMH, description="Raw counter readings, mean per interval."))
    )
