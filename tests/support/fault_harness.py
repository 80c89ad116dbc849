"""What the fault tests need around the load: the gateway as a real process and the count of
what InfluxDB holds against what was published (one service stopped and started again:
services.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import tomli_w

from support.loadgen import KINDS, LoadResult
from support.services import Services, influx_query
from support.waiting import wait_until


# -- the gateway process ---------------------------------------------------------------------
def write_gateway_config(
    path: Path,
    services: Services,
    registry: Path,
    client_id: str,
    topic_prefix: str,
    *,
    shared_group: str | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    mqtt: dict[str, Any] = {
        "host": services.mqtt_host,
        "port": services.mqtt_port,
        "client_id": client_id,
        "topic_prefix": topic_prefix,
    }
    if shared_group:
        mqtt["shared_group"] = shared_group
    config: dict[str, dict[str, Any]] = {
        "mqtt": mqtt,
        "influx": {"url": services.influx_url, "database": services.database},
        "registry": {"path": str(registry)},
        "log": {"rejection_interval_s": 0},
        "stats": {"interval_s": 0.5},
        # Off: its fixed default port would clash between two gateways (and test runs).
        "metrics": {"port": 0},
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    path.write_text(tomli_w.dumps(config))
    return path


class GatewayProcess:
    """`urbanpulse gateway run --config FILE` as a child process, so that kill -9 is real."""

    def __init__(self, config: Path, client_id: str, log_file: Path) -> None:
        self.config = config
        self.client_id = client_id
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # The command installed in the same venv as the interpreter running the tests.
        self.command = Path(sys.executable).with_name("urbanpulse")
        assert self.command.exists(), f"{self.command} missing: run `make setup`"

    def start(self) -> int:
        """Start it; returns the wall-clock ms at start (to find its own stats points)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        started_ms = time.time_ns() // 1_000_000
        with self.log_file.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(self.command), "gateway", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("URBANPULSE_")},
            )
        self.starts += 1
        return started_ms

    def kill9(self) -> None:
        """SIGKILL: no flush, no disconnect, no goodbye; what it held in memory is gone."""
        assert self.process is not None and self.process.poll() is None, "not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def wait_ready(self, services: Services, since_ms: int, timeout_s: float = 90) -> None:
        """Until its own gateway_stats say mqtt_connected, which it sets only after the
        broker acknowledged its subscription (before that a new session would miss messages)."""

        def subscribed() -> bool:
            assert self.running(), f"gateway {self.client_id} exited:\n{self.log()[-3000:]}"
            series = influx_query(
                services,
                f"SELECT last(\"mqtt_connected\") FROM gateway_stats WHERE "
                f"\"gateway\" = '{self.client_id}' AND time >= {since_ms}ms",
            )
            return bool(series) and series[0]["values"][0][1] is True

        wait_until(subscribed, timeout_s, f"gateway {self.client_id} subscribed")


# -- counting ---------------------------------------------------------------------------------
def stored_count(services: Services) -> int:
    """Points InfluxDB holds across the load's measurements (count of the checked field)."""
    total = 0
    for measurement, checked, _ in KINDS.values():
        series = influx_query(services, f'SELECT count("{checked}") FROM "{measurement}"')
        total += int(series[0]["values"][0][1]) if series else 0
    return total


def expected_count(result: LoadResult) -> int:
    return sum(len(points) for points in result.expected().values())


def wait_all_stored(services: Services, result: LoadResult, timeout_s: float) -> None:
    """Until InfluxDB holds at least as many points as were published, or timeout_s passed
    without progress (then the comparison below says what is missing)."""
    want = expected_count(result)
    last, last_change = -1, time.monotonic()
    while True:
        have = stored_count(services)
        if have >= want:
            return
        if have != last:
            last, last_change = have, time.monotonic()
        elif time.monotonic() - last_change > timeout_s:
            return
        time.sleep(0.5)


def exactly_once_problems(services: Services, result: LoadResult) -> list[str]:
    """Every acknowledged sample stored once, with its value, and nothing else; [] when so.

    What "no duplicate points" means in InfluxDB: a point is identified by measurement, tag set
    and timestamp, and writing the same point again overwrites it. So a message delivered
    twice (a real duplicate: same boot and seq, after a kill or a broker restart) and written
    twice leaves one point; that is the contract's idempotent storage, and count() cannot even
    see it. A duplicate *point* is one sample stored as two points: under another timestamp
    (e.g. a gateway stamping arrival time) or another tag set (the same device in two series).
    Each published sample has a timestamp unique within its device, so the test proves there
    are none by reading every stored row and requiring, per measurement:
      - no (device_id, t) appears twice across all of the device's series (GROUP BY device_id
        merges series with other tags, so two tag sets would show as two rows);
      - the set of stored (device_id, t) equals the set published: nothing missing, no extra;
      - count() equals that number, and each stored value is the one published for that t.
    """
    problems: list[str] = []
    expected = result.expected()
    for measurement, checked, _ in KINDS.values():
        want = expected[measurement]
        rows: list[tuple[str, int]] = []
        values: dict[tuple[str, int], Any] = {}
        for series in influx_query(
            services, f'SELECT "{checked}" FROM "{measurement}" GROUP BY "device_id"'
        ):
            device_id = series["tags"]["device_id"]
            for t, value in series["values"]:
                rows.append((device_id, t))
                values[(device_id, t)] = value
        twice = [key for key, n in Counter(rows).items() if n > 1]
        missing = sorted(set(want) - set(values))
        extra = sorted(set(values) - set(want))
        wrong = [k for k in want.keys() & values.keys() if values[k] != want[k]]
        result_series = influx_query(
            services, f'SELECT count("{checked}") FROM "{measurement}"'
        )
        counted = int(result_series[0]["values"][0][1]) if result_series else 0
        if twice:
            problems.append(f"{measurement}: {len(twice)} (device, t) stored twice: {twice[:5]}")
        if missing:
            problems.append(
                f"{measurement}: {len(missing)} of {len(want)} published samples missing, "
                f"by device: {dict(Counter(d for d, _ in missing).most_common(5))}, "
                f"first: {missing[:5]}"
            )
        if extra:
            problems.append(f"{measurement}: {len(extra)} samples nobody published: {extra[:5]}")
        if wrong:
            problems.append(f"{measurement}: {len(wrong)} samples with another value: {wrong[:5]}")
        if counted != len(want):
            problems.append(f"{measurement}: count() = {counted}, published {len(want)}")
    return problems


def gateway_stats(services: Services, client_id: str) -> dict[str, Any]:
    """The last gateway_stats point a gateway wrote (since its last start)."""
    series = influx_query(
        services,
        f"SELECT * FROM gateway_stats WHERE \"gateway\" = '{client_id}' "
        "ORDER BY time DESC LIMIT 1",
    )
    if not series:
        return {}
    return dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))

