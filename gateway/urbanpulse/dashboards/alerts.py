"""Grafana-managed alert rules, the contact point and the notification policy.

Built with the foundation SDK's alerting builders (the provisioning API's JSON), then laid out
both as Grafana's file-provisioning documents (apiVersion 1) and as the API bodies `push` sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am

from .influxql import DATASOURCE_UID, InfluxQL
from .queries import count_latest

FOLDER_UID = "urbanpulse"
FOLDER_TITLE = "UrbanPulse"
RULE_GROUP = "urbanpulse-city"
RULE_GROUP_INTERVAL_S = 60
CONTACT_POINT = "urbanpulse-operators"
ORG_ID = 1


@dataclass(frozen=True)
class AlertSpec:
    uid: str
    title: str
    query: str
    lookback_s: int  # the query's time range, ending now
    op: Literal["gt", "lt"]
    threshold: float
    for_: str
    summary: str
    severity: str


ALERTS: tuple[AlertSpec, ...] = (
    AlertSpec(
        "urbanpulse-aqi-unhealthy", "AQI above 150",
        'SELECT last("aqi") AS "aqi" FROM "kpi_aqi" WHERE "level" = \'device\' '
        'AND $timeFilter GROUP BY "device_id", "district"',
        3 * 3600, "gt", 150, "1h",
        "AQI {{ $values.B }} at {{ $labels.device_id }} ({{ $labels.district }}) has been "
        "Unhealthy (above 150) for an hour.", "warning"),
    AlertSpec(
        "urbanpulse-water-above", "Water above its alert level",
        count_latest("kpi_water", "above", "= true", "device", variables=())
        + ' GROUP BY "device_id"',
        3 * 3600, "gt", 0, "0s",
        "Water level at {{ $labels.device_id }} is above its alert level (threshold_cm).",
        "critical"),
    AlertSpec(
        "urbanpulse-board-offline", "Board offline",
        count_latest("device_status", "state", "= 'offline'", None, variables=())
        + ' GROUP BY "device_id"',
        15 * 60, "gt", 0, "30m",
        "Board {{ $labels.device_id }} has been offline for 30 minutes.", "warning"),
    AlertSpec(
        "urbanpulse-lamp-fault", "Lamp fault",
        count_latest("kpi_streetlight_hourly", "fault", "= true", "device", variables=())
        + ' GROUP BY "device_id"',
        3 * 3600, "gt", 0, "0s",
        "Lamp {{ $labels.device_id }} burned in daylight or was off at night in its latest "
        "hour.", "warning"),
)


def _rule(spec: AlertSpec) -> alerting.Rule:
    return (
        alerting.Rule(spec.title)
        .uid(spec.uid)
        .org_id(ORG_ID)
        .folder_uid(FOLDER_UID)
        .rule_group(RULE_GROUP)
        .condition("C")
        .with_query(
            alerting.Query("A").datasource_uid(DATASOURCE_UID)
            .relative_time_range(am.RelativeTimeRange(from_val=spec.lookback_s, to=0))
            .model(InfluxQL(spec.query, "A")))
        .with_query(
            alerting.Query("B").datasource_uid("__expr__")
            .model(expr.TypeReduce().ref_id("B").expression("A").reducer("last")))
        .with_query(
            alerting.Query("C").datasource_uid("__expr__")
            .model(expr.TypeThreshold().ref_id("C").expression("B").conditions([
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator().type(spec.op)
                    .params([spec.threshold]))])))
        .for_val(spec.for_)
        # No series means no board in that state: nothing to alert on.
        .no_data_state("OK")
        .exec_err_state("Error")
        .labels({"severity": spec.severity, "team": "urbanpulse"})
        .annotations({"summary": spec.summary})
    )


def _plain(obj: object) -> Any:
    """SDK objects -> plain JSON values (lists, dicts, strings, numbers)."""
    import json

    return json.loads(json.dumps(obj, cls=JSONEncoder))


def rule_bodies() -> list[dict[str, Any]]:
    """The rules as the provisioning HTTP API takes them."""
    return [_plain(_rule(spec).build()) for spec in ALERTS]


def rule_group_body() -> dict[str, Any]:
    return {"title": RULE_GROUP, "folderUid": FOLDER_UID, "interval": RULE_GROUP_INTERVAL_S,
            "rules": rule_bodies()}


def contact_point_body() -> dict[str, Any]:
    point = (
        alerting.ContactPoint().uid("urbanpulse-email").name(CONTACT_POINT).type("email")
        # Grafana expands $VARIABLES in provisioning files: the operator's address is set in
        # the environment of grafana-server (deploy/grafana/urbanpulse.env).
        .settings({"addresses": "${URBANPULSE_ALERT_EMAIL}", "singleEmail": True})
        .disable_resolve_message(False)
    )
    return dict(_plain(point.build()))


def policy_body() -> dict[str, Any]:
    policy = (
        alerting.NotificationPolicy().receiver(CONTACT_POINT)
        .group_by(["grafana_folder", "alertname"])
        .group_wait("30s").group_interval("5m").repeat_interval("4h")
    )
    return dict(_plain(policy.build()))


# -- file provisioning documents ---------------------------------------------------------
_API_ONLY = ("folderUID", "ruleGroup", "orgID", "id", "updated", "provenance")


def rules_file() -> dict[str, Any]:
    rules = [{k: v for k, v in rule.items() if k not in _API_ONLY} for rule in rule_bodies()]
    return {"apiVersion": 1, "groups": [{
        "orgId": ORG_ID, "name": RULE_GROUP, "folder": FOLDER_TITLE,
        "interval": f"{RULE_GROUP_INTERVAL_S}s", "rules": rules,
    }]}


def contact_points_file() -> dict[str, Any]:
    point = contact_point_body()
    receiver = {k: v for k, v in point.items() if k != "name"}
    return {"apiVersion": 1, "contactPoints": [
        {"orgId": ORG_ID, "name": point["name"], "receivers": [receiver]}]}


def policies_file() -> dict[str, Any]:
    return {"apiVersion": 1, "policies": [{"orgId": ORG_ID, **policy_body()}]}
