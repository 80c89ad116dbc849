"""The slow fault suite: a gateway that loses nothing, shown with real processes and real kills.

While several thousand telemetry messages per second flow (tests/loadgen.py: publisher
processes that know exactly which messages the broker acknowledged), each test breaks one
part for real: kill -9 of the gateway process, InfluxDB stopped for 30 s, Mosquitto restarted,
one of two load-sharing gateways killed, the on-disk spool filled up. Afterwards every sample
of every acknowledged message must be in InfluxDB exactly once, with its value
(fault_harness.exactly_once_problems explains what "exactly once" means for InfluxDB).

Each test has its own Mosquitto and InfluxDB (urbanpulse.devtools.stack, free ports, a tmp
dir), because it stops and restarts them; the session's shared services are left alone. Runs in
`make test`; `pytest -m 'not faults'` leaves it out for a quick run. About 4-5 minutes on two
cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fault_harness import (
    GatewayProcess,
    exactly_once_problems,
    gateway_stats,
    stored_count,
    wait_all_stored,
    write_gateway_config,
)
from support.loadgen import KINDS, Load, LoadResult, PublisherReport, plan_devices, registry_csv
from support.services import (
    Services,
    influx_drop_and_create,
    influx_write,
    start_services,
    start_stopped_services,
    stop_service,
    stop_services,
)
from support.waiting import wait_until
from urbanpulse.devtools import stack

pytestmark = [pytest.mark.services, pytest.mark.faults]

# Several thousand messages/s (1-5 samples each) from 3 publisher processes: what one gateway
# stores on two shared cores, with publishers, broker and InfluxDB on the same cores.
RATE = 3000
PUBLISHERS = 3
DEVICES = 200
# How long the store may make no progress at all before the count is compared anyway.
STALL_S = 90


class FaultEnv:
    """A private stack, a registry of DEVICES boards, gateway processes and one load."""

    def __init__(self, root: Path, services: Services) -> None:
        self.root = root
        self.services = services
        self.devices = plan_devices(DEVICES)
        self.registry = root / "devices.csv"
        self.registry.write_text(registry_csv(self.devices))
        self.gateways: list[GatewayProcess] = []
        self.load: Load | None = None

    def gateway(
        self,
        client_id: str,
        shared_group: str | None = None,
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> GatewayProcess:
        """A gateway process (not started) with its own config file and spool directory."""
        sections = dict(extra or {})
        sections["spool"] = {"path": str(self.root / f"spool-{client_id}"), **sections.get(
            "spool", {})}
        path = write_gateway_config(
            self.root / f"{client_id}.toml", self.services, self.registry, client_id,
            "city", shared_group=shared_group, extra=sections,
        )
        gateway = GatewayProcess(path, client_id, self.root / f"{client_id}.log")
        self.gateways.append(gateway)
        return gateway

    def start_ready(self, gateway: GatewayProcess) -> None:
        gateway.wait_ready(self.services, gateway.start())

    def start_load(self, duration_s: float) -> Load:
        self.load = Load(
            self.services.mqtt_host, self.services.mqtt_port, self.devices,
            rate=RATE, duration_s=duration_s, publishers=PUBLISHERS,
        )
        self.load.start()
        return self.load

    def wait_load_time(self, seconds: float) -> None:
        """Until the load has run `seconds` (the fault's moment, not a guess at speed)."""
        assert self.load is not None
        load = self.load
        wait_until(lambda: load.elapsed() >= seconds, seconds + 60, f"{seconds} s of load")

    def logs(self) -> str:
        return "\n".join(
            f"--- {g.client_id} log (last lines) ---\n" + "\n".join(g.log().splitlines()[-40:])
            for g in self.gateways
        )

    def assert_exactly_once(self, result: LoadResult) -> None:
        """Every PUBACK'd sample in InfluxDB exactly once; the load itself was sound."""
        # The load generator's own check: every message ended acknowledged, and the broker
        # accepted each (reason code 16 would mean no subscriber: dropped by the broker).
        assert result.unacked_messages == 0, result.summary()
        assert set(result.reason_codes) == {0}, result.summary()
        # A floor, not the target: the cores are shared, but a trickle would prove little.
        assert result.rate > RATE / 3, f"the load was too slow to mean much: {result.summary()}"
        wait_all_stored(self.services, result, STALL_S)
        problems = exactly_once_problems(self.services, result)
        assert not problems, (
            f"{result.summary()}\n" + "\n".join(problems) + "\n" + self.logs()
        )

    def close(self) -> None:
        if self.load is not None:
            self.load.close()
        for gateway in self.gateways:
            gateway.stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[FaultEnv]:
    services = start_services(tmp_path / "stack")
    fault_env = FaultEnv(tmp_path, services)
    try:
        yield fault_env
    finally:
        fault_env.close()
        stop_services(services)


def _workers(workers: int) -> dict[str, dict[str, Any]]:
    """The [service] section for `workers` processes (1: the gateway in one process)."""
    return {"service": {"workers": workers}} if workers > 1 else {}


def _starts(log: str) -> list[str]:
    """The gateway's 'connected to' lines, in order (session_present says what it found)."""
    return [line for line in log.splitlines() if "connected to" in line]


@pytest.mark.parametrize("workers", [1, 2])
def test_gateway_killed_with_sigkill_mid_load_loses_nothing(env: FaultEnv, workers: int) -> None:
    # With workers: kill -9 of the parent; its workers follow it (PR_SET_PDEATHSIG), and the
    # restarted service starts new ones on the same sessions and spools.
    gateway = env.gateway("gw-kill", extra=_workers(workers))
    env.start_ready(gateway)
    load = env.start_load(duration_s=30)
    env.wait_load_time(10)
    gateway.kill9()
    assert gateway.process is not None and gateway.process.returncode == -9
    time.sleep(2)  # down for a moment while the load goes on: the broker keeps the messages
    gateway.start()
    result = load.wait()
    env.assert_exactly_once(result)
    # It came back to its persistent session (the messages it had not acknowledged).
    assert "session_present=True" in _starts(gateway.log())[-1], env.logs()


@pytest.mark.parametrize("workers", [1, 2])
def test_influxdb_down_for_30_s_under_load_loses_nothing(env: FaultEnv, workers: int) -> None:
    gateway = env.gateway("gw-influx", extra=_workers(workers))
    env.start_ready(gateway)
    load = env.start_load(duration_s=40)
    env.wait_load_time(4)
    stop_service(env.services, stack.INFLUXDB)
    down_since = time.monotonic()
    wait_until(lambda: time.monotonic() - down_since >= 30, 60, "30 s of InfluxDB outage")
    assert gateway.running(), env.logs()
    start_stopped_services(env.services)
    result = load.wait()
    env.assert_exactly_once(result)
    stats = gateway_stats(env.services, gateway.client_id)
    # The outage was felt: writes failed and the batches waited in the spool.
    assert stats["write_errors"] > 0 and stats["spooled_points"] > 0, stats


# With workers too: each subscribes to its own boards' topics, which Mosquitto restores (a shared
# subscription it would not: test_workers.py).
@pytest.mark.parametrize("workers", [1, 2])
def test_mosquitto_restart_under_load_loses_nothing(env: FaultEnv, workers: int) -> None:
    # The stack's Mosquitto runs with persistence on (saved on SIGTERM): what it acknowledged
    # to publishers, and what the gateway's session had not acknowledged, survive the restart.
    config = (env.root / "stack" / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence true" in config.splitlines()
    gateway = env.gateway("gw-broker", extra=_workers(workers))
    env.start_ready(gateway)
    load = env.start_load(duration_s=25)
    env.wait_load_time(10)
    stop_service(env.services, stack.MOSQUITTO)
    start_stopped_services(env.services)
    result = load.wait()
    env.assert_exactly_once(result)
    assert result.reconnects >= PUBLISHERS, result.summary()
    starts = _starts(gateway.log())
    assert len(starts) >= 2 and "session_present=True" in starts[-1], env.logs()


def test_one_of_two_shared_subscription_gateways_killed_loses_nothing(env: FaultEnv) -> None:
    first = env.gateway("gw-a", shared_group="gateways")
    second = env.gateway("gw-b", shared_group="gateways")
    env.start_ready(first)
    env.start_ready(second)
    load = env.start_load(duration_s=30)
    env.wait_load_time(10)
    first.kill9()
    # The survivor keeps storing while the other is dead. (Its share only: Mosquitto 2.0 goes
    # on giving every other message of the group to the dead member's persistent session,
    # where they wait for it to come back.)
    before = stored_count(env.services)
    wait_until(lambda: stored_count(env.services) > before + RATE, 60, "the survivor storing")
    env.wait_load_time(16)
    # Mosquitto keeps a dead member's unacknowledged messages in its persistent session and
    # delivers them when it comes back (README: scaling out): restart it, as systemd would.
    first.start()
    result = load.wait()
    env.assert_exactly_once(result)
    assert gateway_stats(env.services, "gw-b")["received"] > 0
    assert "session_present=True" in _starts(first.log())[-1], env.logs()


@pytest.mark.parametrize("workers", [1, 2])
def test_full_spool_loses_nothing_once_influxdb_returns(env: FaultEnv, workers: int) -> None:
    # A spool of 2 MiB holds about 20 000 points: full within seconds at this rate. Then the
    # gateway stops acknowledging and the broker keeps the messages.
    gateway = env.gateway("gw-spool", extra={
        "spool": {"max_bytes": 2 << 20, "segment_bytes": 256 << 10}, **_workers(workers)})
    env.start_ready(gateway)
    load = env.start_load(duration_s=25)
    env.wait_load_time(4)
    stop_service(env.services, stack.INFLUXDB)
    wait_until(lambda: "SPOOL FULL" in gateway.log(), 60, "the spool to fill up")
    time.sleep(5)  # full for a while, with the load going on
    assert gateway.running(), env.logs()
    start_stopped_services(env.services)
    result = load.wait()
    env.assert_exactly_once(result)
    stats = gateway_stats(env.services, gateway.client_id)
    assert stats["spooled_points"] > 0 and stats["replayed_points"] > 0, stats


def test_gateway_killed_while_its_spool_holds_data_loses_nothing(env: FaultEnv) -> None:
    # Spooled batches are acknowledged, so the broker no longer has them: after kill -9 the
    # spool on disk is their only copy, and the restarted gateway must replay it.
    gateway = env.gateway("gw-crash")
    env.start_ready(gateway)
    spool = env.root / "spool-gw-crash"
    load = env.start_load(duration_s=25)
    env.wait_load_time(4)
    stop_service(env.services, stack.INFLUXDB)
    wait_until(lambda: _spooled_bytes(spool) > 1 << 20, 60, "1 MiB in the spool")
    gateway.kill9()
    time.sleep(2)
    gateway.start()
    env.wait_load_time(16)
    assert gateway.running(), env.logs()
    start_stopped_services(env.services)
    result = load.wait()
    env.assert_exactly_once(result)
    assert gateway_stats(env.services, gateway.client_id)["replayed_points"] > 0


def _spooled_bytes(spool: Path) -> int:
    return sum(f.stat().st_size for f in spool.glob("*.seg")) if spool.is_dir() else 0


def test_the_count_sees_a_lost_a_doubled_a_changed_and_an_extra_sample(influx: Services) -> None:
    # The check every fault test relies on, against a store spoiled on purpose.
    devices = plan_devices(2)
    report = PublisherReport("checker", acked={d.device_id: [0, 1, 2] for d in devices})
    result = LoadResult(devices, 1_700_000_000_000, [report])
    points = [
        (measurement, device_id, t, value)
        for measurement, stored in result.expected().items()
        for (device_id, t), value in stored.items()
    ]
    checked = {m: field for m, field, _ in KINDS.values()}

    def line(measurement: str, device_id: str, t: int, value: float, district: str) -> str:
        tags = f"device_id={device_id},district={district}"
        return f"{measurement},{tags} {checked[measurement]}={value} {t}"

    influx_write(influx, "\n".join(line(*p, "north") for p in points))
    assert exactly_once_problems(influx, result) == []

    influx_drop_and_create(influx)
    (_lost, doubled, changed, *rest) = points
    spoiled = [line(*p, "north") for p in rest] + [
        line(*doubled, "north"),
        line(*doubled, "south"),  # the same sample again, in a second series
        line(*changed[:3], changed[3] + 1, "north"),
        line(changed[0], changed[1], 1_600_000_000_000, 1.0, "north"),  # never published
    ]
    influx_write(influx, "\n".join(spoiled))
    problems = "\n".join(exactly_once_problems(influx, result))
    assert "1 of" in problems and "published samples missing" in problems, problems
    assert "1 (device, t) stored twice" in problems, problems
    assert "1 samples with another value" in problems, problems
    assert "1 samples nobody published" in problems, problems
