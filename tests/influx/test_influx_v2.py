"""The InfluxDB 2/3 path (influxdb-client, /api/v2/write) against a real server.

InfluxDB 2/3 cannot be installed here; VictoriaMetrics (Debian package victoria-metrics)
serves the same /api/v2/write API and stores measurement `m` field `f` as metric `m_f`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    gateway_settings,
    running_gateway,
)
from support.services import Services, free_port
from support.waiting import wait_until
from urbanpulse.config import InfluxSettings
from urbanpulse.influx.writer import V2Writer, WriteError

pytestmark = pytest.mark.services

_http = urllib3.PoolManager(retries=False, timeout=10.0)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        pytest.fail("victoria-metrics not installed: run `make setup`", pytrace=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'vm'}",
         "-loggerLevel=ERROR", "-search.latencyOffset=0s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def healthy() -> bool:
            try:
                return _http.request("GET", f"{url}/health").status == 200
            except urllib3.exceptions.HTTPError:
                return False
        wait_until(healthy, 20, "VictoriaMetrics to answer")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def export(url: str, match: str) -> list[dict[str, Any]]:
    _http.request("GET", f"{url}/internal/force_flush")
    response = _http.request("GET", f"{url}/api/v1/export", fields={"match[]": match})
    return [json.loads(line) for line in response.data.decode().splitlines() if line]


def test_gateway_writes_through_the_v2_api(
    services: Services, victoria: str, tmp_path: Path, client_id: str
) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV)
    settings = gateway_settings(services, registry, client_id)
    settings.influx = InfluxSettings(url=victoria, api="v2", org="city", bucket="urbanpulse")
    t = time.time_ns() // 1_000_000 - 5000
    publisher = Publisher(services, "v2-publisher")
    try:
        with running_gateway(settings):
            publisher.publish("city/air-north-01/telemetry", {"v": 1, "boot": 1, "seq": 0,
                "samples": [{"t": t, "pm25": 12.5}, {"t": t + 1000, "pm25": 13.5}]})
            found = wait_until(lambda: [s for s in export(victoria, '{__name__="air_quality_pm25"}')
                                        if len(s["values"]) == 2], what="points in VictoriaMetrics")
    finally:
        publisher.close()
    series = found[0]
    assert series["values"] == [12.5, 13.5]
    assert series["timestamps"] == [t, t + 1000]
    labels = series["metric"]
    assert (labels["device_id"], labels["district"], labels["kind"], labels["site"]) == (
        "air-north-01", "north", "air", "Town Hall")


def test_unreachable_v2_server_is_a_retryable_error() -> None:
    writer = V2Writer(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", api="v2",
                                     org="city", timeout_s=2))
    with pytest.raises(WriteError) as info:
        writer.write(["m f=1.0 1763700000000"])
    assert info.value.retryable
    writer.close()
