"""Network health: which boards are online, their batteries, radios and memory, how complete
their data is, the firmware they run, what they answered to commands, and what the gateways
reject."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from urbanpulse.contract.ota import OTA_ID_PREFIX
from urbanpulse.contract.vocabulary import DEVICE_INTEGRITY_FIELDS

from . import panels as p
from .influxql import location_variables
from .queries import count_latest, latest, per_interval, points

UID = "urbanpulse-network"
VARS = ("district", "device")
BY_DEVICE = ("district", "kind", "device_id")


def _gateway_counter(fields: list[str], per_second: bool) -> str:
    """Counters since gateway start: the increase per interval (or per second), never
    negative, so a gateway restart does not show as a dip."""
    fn = "non_negative_derivative(max({0}), 1s)" if per_second else \
        "non_negative_difference(max({0}))"
    cols = ", ".join(fn.format(f'"{f}"') + f' AS "{f}"' for f in fields)
    return (f'SELECT {cols} FROM "gateway_stats" WHERE $timeFilter '
            'GROUP BY time($__interval), "gateway" fill(none)')


def build() -> dash.Dashboard:
    board = p.new_dashboard(
        UID, "UrbanPulse: Network health",
        "Liveness (device_status), board health (device_health), data completeness and "
        "capture (EU 2008/50/EC: an hour valid at >= 75 %, a day good at >= 90 %), firmware "
        "versions and the gateways' counters.",
        variables=location_variables('"device_status"', VARS))
    return (
        board
        .with_panel(p.stat_panel(
            "Boards online",
            count_latest("device_status", "state", "= 'online'", None, variables=VARS),
            p.COUNT, p.steps("green"), width=6))
        .with_panel(p.stat_panel(
            "Boards offline",
            count_latest("device_status", "state", "= 'offline'", None, variables=VARS),
            p.COUNT, p.bad_high(1.0, 3.0), width=6))
        .with_panel(p.timeseries_panel(
            "Availability by district",
            [points("kpi_network_now", ["availability"], "district", ["district"],
                    variables=("district",))],
            p.PERCENT_UNIT, thresholds=p.good_high(0.8, 0.95), width=12, height=4))
        .with_panel(p.table_panel(
            "Board status",
            [latest("device_status", ["state", "reason"], None, BY_DEVICE, variables=VARS),
             latest("device_health", ["fw", "reset_cause", "faults"], None, ["device_id"],
                    variables=VARS)],
            description="Latest liveness state and why, firmware version, last reset cause "
            "and sensor faults.",
            transformations=[p.join_by_device(), p.hide_time()], width=24))
        .with_panel(p.table_panel(
            "Command answers",
            [points("device_command", ["id", "ok", "error"], None, BY_DEVICE, variables=VARS)],
            description="What each board answered to the commands sent to it (device_command):"
            " the command's id, ok, and the reason of a refusal (retained, bad JSON, a bad "
            "value).",
            transformations=[p.merge_tables()], width=12, height=6))
        .with_panel(p.table_panel(
            "Firmware updates",
            [points("device_command", ["id", "state", "fw", "error"], None, BY_DEVICE,
                    variables=VARS, extra=f'"id" =~ /^{OTA_ID_PREFIX}/')],
            description="Rollouts (`urbanpulse ota push`), answer by answer: fetching, "
            "installed (rebooting into it on trial), running (confirmed after its first health "
            "report), or the error (rolled_back: the board went back to its last good "
            "firmware). Canaries come first; a failed canary stops the rollout.",
            transformations=[p.merge_tables()], width=12, height=6))
        .with_panel(p.table_panel(
            "Sealed telemetry per board",
            [latest("device_integrity", DEVICE_INTEGRITY_FIELDS, None, BY_DEVICE,
                    variables=VARS, agg="sum")],
            description="Contract v2, over the range: sealed messages verified and stored, "
            "gaps (messages lost or withheld upstream), forks (two messages naming the same "
            "predecessor), messages refused for a bad or missing MAC and replays. Anything "
            "but verified deserves a look.",
            transformations=[p.merge_tables(), p.hide_time()], width=16, height=6))
        .with_panel(p.table_panel(
            "Receipts by district",
            [latest("integrity_receipt", ["leaves", "root"], None, ["district"],
                    variables=("district",))],
            description="The latest hourly receipt of each district (signed Merkle root of "
            "the sealed payloads that arrived in that hour, also published retained on "
            "city/receipts/{district}).",
            transformations=[p.merge_tables(), p.hide_time()], width=8, height=6))
        .with_panel(p.timeseries_panel(
            "Chain problems per hour",
            [points("device_integrity", ["gaps", "forks", "bad_mac", "replayed"], None,
                    ["device_id"], variables=VARS)],
            p.COUNT, description="Per board and hour of arrival (device_integrity).",
            bars=True, width=24))
        .with_panel(p.timeseries_panel(
            "Battery", [per_interval("device_health", "battery", "min", ["device_id"],
                                     variables=VARS)],
            p.VOLT, thresholds=p.good_high(3.3, 3.6), decimals=2, width=8))
        .with_panel(p.timeseries_panel(
            "WiFi signal (RSSI)", [per_interval("device_health", "rssi", "min", ["device_id"],
                                                variables=VARS)],
            p.DBM, thresholds=p.good_high(-85.0, -75.0), width=8))
        .with_panel(p.timeseries_panel(
            "Free heap", [per_interval("device_health", "heap_free", "min", ["device_id"],
                                       variables=VARS)],
            p.BYTES, thresholds=p.good_high(10000.0, 20000.0), width=8))
        .with_panel(p.timeseries_panel(
            "Data completeness per hour",
            [points("kpi_network_hourly", ["completeness"], "device", ["device_id"],
                    variables=VARS)],
            p.PERCENT_UNIT, description="Samples received / expected; valid at >= 75 %.",
            thresholds=p.good_high(0.75, 0.9)))
        .with_panel(p.timeseries_panel(
            "Data capture per day",
            [points("kpi_capture_daily", ["capture"], "device", ["device_id"],
                    variables=VARS)],
            p.PERCENT_UNIT, description="Share of valid hours; good at >= 90 %.",
            thresholds=p.good_high(0.75, 0.9), bars=True))
        .with_panel(p.timeseries_panel(
            "Rejected per interval",
            [_gateway_counter(["rejected_messages", "rejected_samples"], per_second=False)],
            p.COUNT, description="Messages and samples the gateways refused (reasons: "
            "gateway_stats rejected_<reason>, README).", bars=True))
        .with_panel(p.timeseries_panel(
            "Gateway throughput",
            [_gateway_counter(["received", "stored_points"], per_second=True)],
            "reqps", description="Messages received and points stored per second."))
    )
