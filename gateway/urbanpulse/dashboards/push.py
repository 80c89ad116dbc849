"""`urbanpulse dashboards push`: the same data source, folder, dashboards and alerting as the
provisioning files, uploaded through Grafana's HTTP API (grafana-client) for a Grafana whose
files you cannot edit. Every step creates or updates by uid, so running it twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from . import alerts, provisioning
from .build import dashboard_json
from .catalog import DASHBOARDS
from .influxql import DATASOURCE_UID


class PushError(Exception):
    """Grafana refused a step; the message names the step."""


@dataclass(frozen=True)
class PushSettings:
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "urbanpulse"
    influx_user: str = ""
    influx_password: str = ""
    alert_email: str = "operators@example.org"


@dataclass(frozen=True)
class Step:
    """One create-or-update: `probe` (GET) tells whether the object exists; then `update`
    (when it exists) or `create` is sent with `body`."""
    what: str
    body: Any
    create: tuple[Literal["POST", "PUT"], str]
    update: tuple[Literal["POST", "PUT"], str] | None = None
    probe: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def plan(settings: PushSettings) -> list[Step]:
    """Every call push makes, in order: the data source and folder before what uses them."""
    ds = provisioning.datasource(settings.influx_url, settings.influx_db, settings.influx_user,
                                 settings.influx_password)
    steps = [
        Step("data source " + DATASOURCE_UID, ds, ("POST", "/datasources"),
             ("PUT", f"/datasources/uid/{DATASOURCE_UID}"), f"/datasources/uid/{DATASOURCE_UID}"),
        Step("folder " + alerts.FOLDER_UID, {"uid": alerts.FOLDER_UID,
                                             "title": alerts.FOLDER_TITLE},
             ("POST", "/folders"), ("PUT", f"/folders/{alerts.FOLDER_UID}"),
             f"/folders/{alerts.FOLDER_UID}"),
    ]
    for name in DASHBOARDS:
        board = dashboard_json(name)
        # overwrite: the dashboard with this uid is replaced (create or update in one call).
        steps.append(Step(f"dashboard {board['uid']}", {
            "dashboard": board, "folderUid": alerts.FOLDER_UID, "overwrite": True,
            "message": "urbanpulse dashboards push"}, ("POST", "/dashboards/db")))
    contact = alerts.contact_point_body()
    contact["settings"] = dict(contact["settings"], addresses=settings.alert_email)
    steps += [
        Step(f"contact point {contact['uid']}", contact,
             ("POST", "/v1/provisioning/contact-points"),
             ("PUT", f"/v1/provisioning/contact-points/{contact['uid']}"),
             "/v1/provisioning/contact-points"),
        Step("notification policy", alerts.policy_body(), ("PUT", "/v1/provisioning/policies")),
        # PUT of the whole group creates, updates or removes its rules by uid.
        Step(f"alert rule group {alerts.RULE_GROUP}", alerts.rule_group_body(),
             ("PUT", f"/v1/provisioning/folder/{alerts.FOLDER_UID}/rule-groups/"
              f"{alerts.RULE_GROUP}")),
    ]
    return steps


def _exists(api: Any, step: Step) -> bool:
    from grafana_client.client import GrafanaClientError

    assert step.probe is not None
    try:
        found = api.client.GET(step.probe)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    if isinstance(found, list):  # contact points: a list to search by uid
        return any(item.get("uid") == step.body.get("uid") for item in found)
    return True


def push(url: str, token: str, settings: PushSettings) -> list[str]:
    """Apply the plan to the Grafana at url; return what was done, one line per step."""
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=30.0)
    done = []
    for step in plan(settings):
        try:
            exists = step.probe is not None and _exists(api, step)
            method, path = step.update if exists and step.update else step.create
            call = api.client.PUT if method == "PUT" else api.client.POST
            call(path, json=step.body, headers=step.headers)
        except GrafanaException as exc:
            raise PushError(f"{step.what}: Grafana at {url} answered {exc}") from None
        except OSError as exc:
            raise PushError(f"{step.what}: Grafana at {url} unreachable: {exc}") from None
        done.append(f"{'updated' if exists else 'created'} {step.what}" if step.probe
                    else f"put {step.what}")
    return done
