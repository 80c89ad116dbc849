"""An open-data export of a known day (CONTRACT.md v2) through the real commands: it verifies
from its files alone, and one changed CSV value, payload byte, proof hash or receipt byte
makes `urbanpulse verify` fail and name it. The archive and receipts are made by the
gateway's own code; the KPIs come from the real InfluxDB."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.gateway_harness import Publisher, gateway_settings, rows, running_gateway
from support.services import Services, influx_write
from support.waiting import wait_until
from urbanpulse.config import KeySettings
from urbanpulse.contract.sealed import digest, genesis, seal
from urbanpulse.registry.keystore import render_keys
from urbanpulse.service.archive import CLOSED, Archived, encode, segment_name
from urbanpulse.service.receipts import ReceiptMaker

HOUR = 3_600_000
DAY = 24 * HOUR
KEY = bytes(32)
# A known day: 2026-11-02 (UTC), two districts, three boards, a message a minute for 3 hours.
DAY_START = 1_793_577_600_000
HOURS = (DAY_START + 8 * HOUR, DAY_START + 9 * HOUR, DAY_START + 13 * HOUR)


def urbanpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def make_archive(root: Path) -> int:
    """The archive and its receipts; how many payloads."""
    boards = {"air-ex-01": "north", "noise-ex-02": "north", "lamp-ex-03": "south"}
    prev = {d: genesis(d) for d in boards}
    n = 0
    for hour in HOURS:
        found = []
        for minute in range(60):
            t = hour + minute * 60_000
            for d, district in boards.items():
                sample = {"air-ex-01": f'"pm25":{minute % 40}.5,"pm10":{minute % 50 + 1}',
                          "noise-ex-02": f'"laeq":{50 + minute % 20}.25',
                          "lamp-ex-03": f'"lamp_on":{"true" if minute % 2 else "false"},'
                                        f'"power":{minute}'}[d]
                body = (f'{{"v":2,"boot":3,"seq":{n},"samples":[{{"t":{t},{sample}}}],'
                        f'"prev":"{prev[d].hex()}"}}').encode()
                payload = seal(body, KEY)
                prev[d] = digest(payload)
                found.append(Archived(t + 500, d, district, 3, n, payload))
                n += 1
        folder = root / "main"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (segment_name(hour) + CLOSED)).write_bytes(b"".join(encode(r) for r in found))
    maker = ReceiptMaker(root, Ed25519PrivateKey.generate(), "city",
                         lambda topic, doc: True, lambda lines: True)
    maker.tick(time.time_ns() // 1_000_000)
    return n


@pytest.fixture
def day_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export")
    assert make_archive(base / "archive") == 540
    config = base / "gw.toml"
    config.write_text(f'[archive]\npath = "{base / "archive"}"\n[export]\npublisher = '
                      '"City of Testville"\nlicence = "CC0-1.0"\n', encoding="utf-8")
    out = base / "out"
    made = urbanpulse("export", "--from", "2026-11-02", "--to", "2026-11-02", "--out", str(out),
                      "--config", str(config), "--no-kpi")
    assert made.returncode == 0, made.stderr
    assert "540 payloads in 6 receipts" in made.stdout, made.stdout
    return out


def test_an_export_of_a_known_day_verifies_and_says_what_it_holds(day_export: Path) -> None:
    result = urbanpulse("verify", str(day_export))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "6 receipts, 540 payloads, 540 rows: all verified"
    with (day_export / "air_quality.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 180 and rows[0]["time"] == "2026-11-02T08:00:00.000Z"
    assert (rows[1]["pm25"], rows[1]["pm10"], rows[1]["co2"]) == ("1.5", "2.0", "")
    with (day_export / "streetlight.csv").open() as f:
        lamps = list(csv.DictReader(f))
    assert {r["district"] for r in lamps} == {"south"} and lamps[1]["lamp_on"] == "true"
    readme = (day_export / "README.md").read_text()
    assert "City of Testville" in readme and "CC0-1.0" in readme
    catalog = json.loads((day_export / "catalog.json").read_text())
    assert catalog["dct:license"] == "CC0-1.0"
    names = {d["dct:title"] for d in catalog["dcat:distribution"]}
    assert {"payloads.jsonl", "receipts.json", "air_quality.csv", "README.md"} <= names


def _tampered(export: Path, tmp_path: Path, name: str, old: str, new: str,
              line: int | None = None) -> subprocess.CompletedProcess[str]:
    copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(export, copy)
    lines = (copy / name).read_text().splitlines(keepends=True)
    at = line if line is not None else next(i for i, s in enumerate(lines) if old in s)
    assert old in lines[at]
    lines[at] = lines[at].replace(old, new, 1)
    (copy / name).write_text("".join(lines))
    return urbanpulse("verify", str(copy))


def test_one_changed_value_byte_hash_or_receipt_fails_and_is_named(
        day_export: Path, tmp_path: Path) -> None:
    value = _tampered(day_export, tmp_path, "air_quality.csv", ",1.5,", ",1.4,", line=2)
    assert value.returncode == 1
    assert "FAIL air_quality.csv line 3: pm25 not as in its payload" in value.stdout

    payload = _tampered(day_export, tmp_path, "payloads.jsonl", '\\"laeq\\":51.25',
                        '\\"laeq\\":41.25')
    assert payload.returncode == 1
    assert "payloads.jsonl line" in payload.stdout and "do not lead to the root" in \
        payload.stdout
    # ... and the rows drawn from it are no longer proven.
    assert "noise.csv line 3: its payload" in payload.stdout

    lines = (day_export / "payloads.jsonl").read_text().splitlines()
    proof_hash = json.loads(lines[7])["proof"][0]
    proof = _tampered(day_export, tmp_path, "payloads.jsonl", proof_hash,
                      proof_hash[:-1] + ("0" if proof_hash[-1] != "0" else "1"), line=7)
    assert proof.returncode == 1
    assert "FAIL payloads.jsonl line 8: the payload and its proof do not lead" in proof.stdout

    # A row left out: its payload's reading is missing.
    cut = tmp_path / "cut"
    shutil.copytree(day_export, cut)
    lines = (cut / "noise.csv").read_text().splitlines(keepends=True)
    (cut / "noise.csv").write_text("".join(lines[:5] + lines[6:]))
    missing = urbanpulse("verify", str(cut))
    assert missing.returncode == 1
    assert "has no row in noise.csv" in missing.stdout, missing.stdout

    root = json.loads((day_export / "receipts.json").read_text())[0]["root"]
    receipt = _tampered(day_export, tmp_path, "receipts.json", root,
                        root[:-1] + ("0" if root[-1] != "0" else "1"))
    assert receipt.returncode == 1
    assert "FAIL receipts.json: receipt 1: bad signature on the receipt of north " \
           "2026-11-02T08:00:00Z" in receipt.stdout


@pytest.mark.services
def test_the_export_carries_the_hours_kpis_from_influxdb(
        influx: Services, tmp_path: Path) -> None:
    make_archive(tmp_path / "archive")
    influx_write(influx, f"kpi_air,device_id=air-ex-01,district=north aqi=42.0 "
                 f"{DAY_START + 8 * HOUR}\nkpi_air,device_id=air-ex-09,district=west aqi=7.0 "
                 f"{DAY_START + 8 * HOUR}")
    config = tmp_path / "gw.toml"
    config.write_text(f'[archive]\npath = "{tmp_path / "archive"}"\n[influx]\nurl = '
                      f'"{influx.influx_url}"\ndatabase = "{influx.database}"\n',
                      encoding="utf-8")
    made = urbanpulse("export", "--from", "2026-11-02T08", "--to", "2026-11-02T08",
                      "--district", "north", "--out", str(tmp_path / "out"), "--config",
                      str(config))
    assert made.returncode == 0, made.stderr
    assert "120 payloads in 1 receipts" in made.stdout
    with (tmp_path / "out" / "kpi" / "kpi_air.csv").open() as f:
        kpis = list(csv.DictReader(f))
    assert [(k["device_id"], k["aqi"]) for k in kpis] == [("air-ex-01", "42")]
    assert urbanpulse("verify", str(tmp_path / "out")).returncode == 0


@pytest.mark.services
def test_verify_live_finds_a_reading_changed_or_added_behind_the_gateways_back(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district\nair-live-01,air,north\n", encoding="utf-8")
    store = tmp_path / "device-keys.json"
    store.write_text(render_keys({"air-live-01": KEY}))
    store.chmod(0o600)
    settings = gateway_settings(influx, registry, client_id)
    settings.keys = KeySettings(device_keys=store)
    config = tmp_path / "gw.toml"
    config.write_text(f'[archive]\npath = "{settings.archive.path}"\n[influx]\nurl = '
                      f'"{influx.influx_url}"\ndatabase = "{influx.database}"\n',
                      encoding="utf-8")
    now = time.time_ns() // 1_000_000
    t0 = now - 120_000
    prev = genesis("air-live-01")
    pub = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(settings):
            for i in range(5):
                body = (f'{{"v":2,"boot":1,"seq":{i},"samples":[{{"t":{t0 + 1000 * i},'
                        f'"pm25":{10 + i}.5}}],"prev":"{prev.hex()}"}}').encode()
                payload = seal(body, KEY)
                prev = digest(payload)
                pub.publish("city/air-live-01/telemetry", payload)
            wait_until(lambda: len(rows(influx, "SELECT pm25 FROM air_quality")) == 5, 20,
                       "the readings stored")
    finally:
        pub.close()
    hours = [time.strftime("%Y-%m-%dT%H", time.gmtime(t / 1000)) for t in (t0, now)]
    live = ["verify", "--live", "--from", hours[0], "--to", hours[1], "--config", str(config)]
    clean = urbanpulse(*live)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "5 stored readings compared with the archive: all as sealed" in clean.stdout
    tags = "device_id=air-live-01,district=north,kind=air"
    influx_write(influx, f"air_quality,{tags} pm25=99.5 {t0 + 2000}\n"
                 f"air_quality,{tags} pm25=1.0 {t0 + 2500}")
    tampered = urbanpulse(*live)
    assert tampered.returncode == 1, tampered.stdout
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((t0 + 2000) // 1000))
    assert (f"FAIL air_quality device air-live-01 at {stamp}.{(t0 + 2000) % 1000:03d}Z: "
            "changed: pm25 stored 99.5, sealed 12.5") in tampered.stdout
    assert "added (no sealed payload holds it)" in tampered.stdout
