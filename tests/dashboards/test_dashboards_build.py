"""The committed dashboards and provisioning files are exactly what the code generates, the
generation is deterministic, and the dashboards hang together (one data source, unique ids,
the variables and units Grafana knows, the overview's headline queries, the alerting files
pointing at each other), and push plans every object by uid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml  # type: ignore[import-untyped]
from grafana_foundation_sdk.models import units

from support.paths import REPO
from urbanpulse.cli.main import main
from urbanpulse.dashboards import alerts
from urbanpulse.dashboards.headline import HEADLINES
from urbanpulse.dashboards.push import PushSettings, plan

PROVISIONING = REPO / "deploy/grafana/provisioning"


def _boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((REPO / "dashboards").glob("*.json"))}


def _yaml(rel: str) -> Any:
    return yaml.safe_load((PROVISIONING / rel).read_text(encoding="utf-8"))


def test_committed_files_are_what_the_code_generates(capsys: pytest.CaptureFixture[str],
                                                     ) -> None:
    """CI fails here when someone edits the code and forgets `urbanpulse dashboards build`."""
    assert main(["dashboards", "build", "--check", "--root", str(REPO)]) == 0, \
        capsys.readouterr().out


def test_check_names_a_stale_file_and_build_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(REPO / "dashboards", tmp_path / "dashboards")
    shutil.copytree(REPO / "deploy/grafana", tmp_path / "deploy/grafana")
    noise = tmp_path / "dashboards/noise.json"
    noise.write_text(noise.read_text().replace("LAeq per hour", "LAeq hourly"))
    (tmp_path / "deploy/grafana/provisioning/alerting/urbanpulse-policies.yaml").unlink()

    assert main(["dashboards", "build", "--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "out of date: dashboards/noise.json" in out
    assert "urbanpulse-policies.yaml" in out and "city-overview" not in out
    assert main(["dashboards", "build", "--root", str(tmp_path)]) == 0
    assert "2 files changed" in capsys.readouterr().out
    assert main(["dashboards", "build", "--check", "--root", str(tmp_path)]) == 0
    assert noise.read_bytes() == (REPO / "dashboards/noise.json").read_bytes()


def test_generation_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    """Same code, same bytes, whatever the process (hash seeds differ between runs)."""
    script = ("import hashlib, sys; from urbanpulse.dashboards.build import artefacts; "
              "sys.stdout.write(hashlib.sha256(b''.join(p.as_posix().encode() + d "
              "for p, d in artefacts().items())).hexdigest())")
    digests = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True, env=os.environ | {"PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_dashboards_hang_together() -> None:
    boards = _boards()
    assert sorted(boards) == ["air-quality", "city-overview", "mobility", "network-health",
                              "noise", "street-lighting", "water"]
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and all(u.startswith("urbanpulse-") for u in uids)
    known_units = {get_args(t)[0] for t in units.__annotations__.values()}
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            assert panel["datasource"]["uid"] == "urbanpulse-influx"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "urbanpulse-influx"
                assert target["rawQuery"] is True and target["query"].startswith("SELECT")
            unit = panel["fieldConfig"]["defaults"].get("unit", "none")
            assert unit in known_units or unit.startswith("suffix:"), (name, unit)
        for variable in board.get("templating", {}).get("list", []):
            assert variable["query"].startswith("SHOW TAG VALUES FROM")
            assert variable["allValue"] == ".*" and variable["multi"] is True
    assert [v["name"] for v in boards["air-quality"]["templating"]["list"]] == [
        "district", "site", "device"]


def test_overview_shows_the_headline_kpis_and_every_board_on_a_map() -> None:
    panels = _boards()["city-overview"]["panels"]
    stats = [p for p in panels if p["type"] == "stat"]
    assert [(p["title"], p["targets"][0]["query"]) for p in stats] == [
        (h.title, h.query) for h in HEADLINES]
    aqi = stats[0]["fieldConfig"]["defaults"]
    assert [s["color"] for s in aqi["thresholds"]["steps"]] == [
        "#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#8F3F97", "#7E0023"]  # EPA colours
    assert [s["value"] for s in aqi["thresholds"]["steps"]] == [None, 51, 101, 151, 201, 301]
    (geomap,) = [p for p in panels if p["type"] == "geomap"]
    assert "device_info" in geomap["targets"][0]["query"]
    layers = geomap["options"]["layers"]
    assert {layer["location"]["latitude"] for layer in layers} == {"lat"}
    assert {layer["config"]["style"]["color"]["field"] for layer in layers} == {"aqi", "state"}


def test_provisioning_files_point_at_each_other() -> None:
    (ds,) = _yaml("datasources/urbanpulse.yaml")["datasources"]
    assert (ds["uid"], ds["type"], ds["url"]) == (
        "urbanpulse-influx", "influxdb", "${URBANPULSE_INFLUX_URL}")
    assert ds["jsonData"]["dbName"] == "${URBANPULSE_INFLUX_DB}"
    (provider,) = _yaml("dashboards/urbanpulse.yaml")["providers"]
    assert provider["type"] == "file" and provider["folder"] == "UrbanPulse"
    (group,) = _yaml("alerting/urbanpulse-rules.yaml")["groups"]
    assert group["folder"] == provider["folder"]
    (cp,) = _yaml("alerting/urbanpulse-contact-points.yaml")["contactPoints"]
    (policy,) = _yaml("alerting/urbanpulse-policies.yaml")["policies"]
    assert policy["receiver"] == cp["name"]
    env = (REPO / "deploy/grafana/urbanpulse.env").read_text()
    placeholders = {"URBANPULSE_INFLUX_URL", "URBANPULSE_INFLUX_DB", "URBANPULSE_ALERT_EMAIL",
                    "URBANPULSE_DASHBOARDS_DIR"}
    assert all(f"\n{name}=" in env for name in placeholders)


def test_push_plan_creates_or_updates_everything_by_uid() -> None:
    settings = PushSettings(influx_url="http://influx.city:8086", influx_db="city",
                            alert_email="noc@city.example")
    steps = plan(settings)
    what = [s.what for s in steps]
    assert what[:2] == ["data source urbanpulse-influx", "folder urbanpulse"]
    assert what[-1] == "alert rule group urbanpulse-city"
    dashboards = [s for s in steps if s.what.startswith("dashboard ")]
    by_uid = {b["uid"]: b for b in _boards().values()}
    assert {s.body["dashboard"]["uid"]: s.body["dashboard"] for s in dashboards} == by_uid
    assert all(s.body["overwrite"] and s.body["folderUid"] == "urbanpulse" for s in dashboards)
    ds = steps[0]
    assert ds.body["url"] == "http://influx.city:8086" and ds.body["jsonData"]["dbName"] == "city"
    assert ds.update == ("PUT", "/datasources/uid/urbanpulse-influx")
    assert "${" not in json.dumps([s.body for s in steps])  # real values, not placeholders
    group = steps[-1].body
    assert [r["uid"] for r in group["rules"]] == [a.uid for a in alerts.ALERTS]
    assert all(r["folderUID"] == "urbanpulse" and r["ruleGroup"] == "urbanpulse-city"
               for r in group["rules"])


def test_push_refuses_a_missing_token_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "push", "--url", "http://127.0.0.1:9",
                 "--token-file", str(tmp_path / "nope")]) == 2
    assert f"--token-file {tmp_path / 'nope'}: No such file" in capsys.readouterr().err
