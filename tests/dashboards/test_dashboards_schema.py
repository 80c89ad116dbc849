"""Every committed dashboard validates against JSON Schemas generated, during the test run,
from Grafana's own published TypeScript types (npm @grafana/schema, the release matching the
foundation SDK's Grafana 11.6) by ts-json-schema-generator: the dashboard model, and each
panel plugin's options and field config. Needs node and npm; the npm packages are cached in
pytest's cache directory, so only the first run downloads them."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from support.paths import REPO

GRAFANA_SCHEMA = "11.6.9"  # @grafana/schema: the latest 11.6 release
GENERATOR = "2.4.0"  # ts-json-schema-generator: the newest that runs on Node 20
RAW = "node_modules/@grafana/schema/dist/esm/raw"
# (schema name, .d.ts under RAW, exported type)
TYPES = [
    ("dashboard", "dashboard/x/dashboard_types.gen.d.ts", "Dashboard"),
    ("stat.options", "composable/stat/panelcfg/x/StatPanelCfg_types.gen.d.ts", "Options"),
    ("timeseries.options", "composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.d.ts",
     "Options"),
    ("timeseries.custom", "composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.d.ts",
     "FieldConfig"),
    ("table.options", "composable/table/panelcfg/x/TablePanelCfg_types.gen.d.ts", "Options"),
    ("table.custom", "composable/table/panelcfg/x/TablePanelCfg_types.gen.d.ts", "FieldConfig"),
    ("geomap.options", "composable/geomap/panelcfg/x/GeomapPanelCfg_types.gen.d.ts", "Options"),
]


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: timed out after 600 s ({' '.join(cmd)})", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}); is the npm registry reachable?\n"
                    f"$ {' '.join(cmd)}\n{done.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def grafana_schemas(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` not found: install Node.js 20 and npm (Debian: "
                        "apt-get install nodejs npm) to check dashboards against Grafana's "
                        "types", pytrace=False)
    cache = Path(request.config.cache.mkdir(f"grafana-schema-{GRAFANA_SCHEMA}-{GENERATOR}"))
    out = cache / "schemas"
    if not all((out / f"{name}.json").is_file() for name, _, _ in TYPES):
        _run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
              "--loglevel=error", f"@grafana/schema@{GRAFANA_SCHEMA}",
              f"ts-json-schema-generator@{GENERATOR}"], cache, "npm install")
        out.mkdir(exist_ok=True)
        for name, dts, type_name in TYPES:
            _run([str(cache / "node_modules/.bin/ts-json-schema-generator"),
                  "--path", str(cache / RAW / dts), "--type", type_name, "--no-type-check",
                  "--out", str(out / f"{name}.json.tmp")], cache, f"schema for {type_name}")
            (out / f"{name}.json.tmp").replace(out / f"{name}.json")
    return {name: json.loads((out / f"{name}.json").read_text()) for name, _, _ in TYPES}


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator.iter_errors(instance)]


DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


def test_schema_release_matches_the_sdk() -> None:
    sdk = version("grafana-foundation-sdk").split("!")[-1]
    assert sdk.split(".")[:2] == GRAFANA_SCHEMA.split(".")[:2]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_matches_grafanas_types(
    grafana_schemas: dict[str, dict[str, Any]], path: Path,
) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert _errors(grafana_schemas["dashboard"], board) == []
    for panel in board["panels"]:
        kind = panel["type"]
        assert f"{kind}.options" in grafana_schemas, f"no schema for panel type {kind}"
        assert _errors(grafana_schemas[f"{kind}.options"], panel.get("options", {})) == [], \
            panel["title"]
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if f"{kind}.custom" in grafana_schemas and custom is not None:
            assert _errors(grafana_schemas[f"{kind}.custom"], custom) == [], panel["title"]


def test_the_schemas_refuse_what_grafana_would(
    grafana_schemas: dict[str, dict[str, Any]],
) -> None:
    board = json.loads((REPO / "dashboards/city-overview.json").read_text(encoding="utf-8"))
    board["panels"][0]["gridPos"]["w"] = "wide"
    board["refresh_rate"] = "1m"
    errors = _errors(grafana_schemas["dashboard"], board)
    assert any(e.startswith("panels/0:") for e in errors), errors  # neither Panel nor Row
    assert any("refresh_rate" in e for e in errors), errors
    stat = board["panels"][0]["options"]
    assert _errors(grafana_schemas["stat.options"], stat | {"colorMode": "rainbow"})
    # The SDK's interval-variable keys on a query variable are not in Grafana 11.6's types
    # (build.py drops them): the schema really checks variables.
    variable = json.loads((REPO / "dashboards/air-quality.json").read_text())["templating"]
    variable["list"][0]["auto_min"] = "10s"
    assert _errors(grafana_schemas["dashboard"], board | {"templating": variable})
