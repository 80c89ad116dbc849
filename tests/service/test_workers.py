"""``[service] workers = 2``: two worker processes under one parent, with real processes and kills.

The load (tests/support/loadgen.py) runs while a worker is killed with kill -9; afterwards
every acknowledged sample is in InfluxDB exactly once. The parent's counters and liveness
cover what both workers received; the parent's own kill -9, InfluxDB down, a broker restart
and a full spool with two workers are in test_faults.py (parametrised by workers). The last
test here shows the broker behaviour that keeps workers off shared subscriptions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from support.fault_harness import (
    GatewayProcess,
    exactly_once_problems,
    gateway_stats,
    wait_all_stored,
    write_gateway_config,
)
from support.loadgen import Device, Load, plan_devices, registry_csv
from support.services import (
    Services,
    influx_drop_and_create,
    influx_query,
    start_services,
    start_stopped_services,
    stop_service,
    stop_services,
)
from support.waiting import wait_until
from urbanpulse.devtools import stack
from urbanpulse.service.partition import load_state

pytestmark = [pytest.mark.services, pytest.mark.faults]

DEVICES = 100
RATE = 2000


class WorkersEnv:
    def __init__(self, root: Path, services: Services) -> None:
        self.services = services
        self.devices = plan_devices(DEVICES)
        registry = root / "devices.csv"
        registry.write_text(registry_csv(self.devices))
        config = write_gateway_config(
            root / "gw.toml", services, registry, "gw-workers", "city",
            extra={"service": {"workers": 2}, "spool": {"path": str(root / "spool")}})
        self.spool = root / "spool"
        self.gateway = GatewayProcess(config, "gw-workers", root / "gw.log")
        self.load: Load | None = None

    def start_load(self, duration_s: float) -> Load:
        self.load = Load(self.services.mqtt_host, self.services.mqtt_port, self.devices,
                         rate=RATE, duration_s=duration_s, publishers=2)
        self.load.start()
        return self.load

    def workers(self) -> dict[int, int]:
        """Worker index -> pid, of the parent's running workers."""
        assert self.gateway.process is not None
        out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid",
                              str(self.gateway.process.pid)],
                             capture_output=True, text=True, check=False).stdout
        found = {}
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if "--worker" in args:
                found[int(args.split("--worker")[1].split()[0].split("/")[0])] = int(pid)
        return found


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WorkersEnv]:
    services = start_services(tmp_path / "stack")
    workers_env = WorkersEnv(tmp_path, services)
    try:
        yield workers_env
    finally:
        if workers_env.load is not None:
            workers_env.load.close()
        workers_env.gateway.stop()
        stop_services(services)


def test_two_workers_share_the_load_and_one_killed_loses_nothing(env: WorkersEnv) -> None:
    gateway = env.gateway
    gateway.wait_ready(env.services, gateway.start())
    workers = env.workers()
    assert sorted(workers) == [0, 1], gateway.log()
    load = env.start_load(duration_s=20)
    wait_until(lambda: load.elapsed() >= 6, 60, "6 s of load")
    os.kill(workers[1], signal.SIGKILL)
    # The parent starts it again, on its session (the messages it had not acknowledged).
    wait_until(lambda: env.workers().get(1, workers[1]) != workers[1], 30,
               "worker 1 started again")
    result = load.wait()
    assert result.unacked_messages == 0 and set(result.reason_codes) == {0}, result.summary()
    wait_all_stored(env.services, result, 90)
    problems = exactly_once_problems(env.services, result)
    assert not problems, "\n".join(problems) + "\n" + gateway.log()[-5000:]
    log = gateway.log()
    assert "worker 1 exited" in log, log[-3000:]
    restarted = [line for line in log.splitlines() if "as gw-workers-w1 " in line][-1]
    assert "session_present=True" in restarted, log[-3000:]
    # Both workers stored their share: each has its own spool directory, and its session.
    assert {p.name for p in env.spool.iterdir() if p.is_dir()} == {"worker-0", "worker-1"}
    assert "as gw-workers-w0 " in log and "as gw-workers-w1 " in log
    # The parent counts for all: every message was received by some worker. (Counted again
    # after the kill: the messages worker 1 had not acknowledged came twice.)
    time.sleep(2)  # a report (every second) and a stats point (every 0.5 s)
    stats = gateway_stats(env.services, "gw-workers")
    assert stats["received"] >= result.acked_messages, stats
    assert stats["mqtt_connected"] is True, stats
    # Liveness is the parent's, from what the workers heard: every board is online.
    online = influx_query(
        env.services, "SELECT last(\"online\") FROM device_status GROUP BY \"device_id\"")
    states = {s["tags"]["device_id"]: s["values"][0][1] for s in online}
    assert states == {d.device_id: True for d in env.devices}, states


def test_mosquitto_forgets_shared_subscriptions_of_offline_sessions_on_restart(
    tmp_path: Path,
) -> None:
    # Why workers take their boards by plain subscriptions (README, "Every core: workers"): a
    # persistent session's plain subscription survives a restart, its shared subscription
    # does not, so until the members are back the broker acknowledges their messages and
    # drops them (PUBACK reason 16, no matching subscribers). Several gateways in a
    # shared_group still meet it.
    services = start_services(tmp_path / "stack")
    try:
        for client_id, topic in (("shared-member", "$share/g/city/+/telemetry"),
                                 ("plain-member", "plain/#")):
            member = _persistent(services, client_id)
            member.subscribe(topic, 1)
            time.sleep(0.3)
            member.disconnect()
            member.loop_stop()
        stop_service(services, stack.MOSQUITTO)
        start_stopped_services(services)
        codes: list[int] = []
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="restart-pub",
                                protocol=mqtt.MQTTv5)
        publisher.on_publish = lambda client, userdata, mid, rc, props: codes.append(rc.value)
        publisher.connect(services.mqtt_host, services.mqtt_port)
        publisher.loop_start()
        for topic in ("city/air-x/telemetry", "plain/x"):
            publisher.publish(topic, b"{}", qos=1).wait_for_publish(10)
        wait_until(lambda: len(codes) == 2, 10, "both PUBACKs")
        publisher.loop_stop()
        assert codes == [16, 0], codes
    finally:
        stop_services(services)


def _persistent(services: Services, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect(services.mqtt_host, services.mqtt_port, clean_start=False,
                   properties=properties)
    client.loop_start()
    return client


def _partition_round(tmp_path: Path, services: Services, workers: int,
                     devices: list[Device], add_board: bool) -> None:
    """A gateway with ``workers`` stores a short load from ``devices`` once each; with
    ``add_board``, the last of them is added to the registry while it runs."""
    registry = tmp_path / "devices.csv"
    config = write_gateway_config(
        tmp_path / "gw.toml", services, registry, "gw-part", "city",
        extra={"service": {"workers": workers}, "registry": {"reload_interval_s": 0.5},
               "spool": {"path": str(tmp_path / "spool")}})
    gateway = GatewayProcess(config, "gw-part", tmp_path / f"gw-{workers}.log")
    influx_drop_and_create(services)  # each round counts its own load only
    try:
        gateway.wait_ready(services, gateway.start())
        if add_board:
            before = gateway.log().count("reloaded: 30 devices")
            registry.write_text(registry_csv(devices))
            wait_until(lambda: gateway.log().count("reloaded: 30 devices") >= before + 3, 30,
                       "the parent and both workers reloaded")
        # Each board's topics held by one worker's session only: the moved ones were let go
        # of (their new owner had them first), so no message is stored twice.
        wait_until(lambda: sum(len(load_state(tmp_path / "spool" / f"worker-{i}").held)
                               for i in range(workers)) == 3 * len(devices), 30,
                   "the moved boards let go of")
        load = Load(services.mqtt_host, services.mqtt_port, devices, rate=300, duration_s=3,
                    publishers=1, name=f"part-{workers}")
        load.start()
        result = load.wait()
        load.close()
        wait_all_stored(services, result, 60)
        problems = exactly_once_problems(services, result)
        assert not problems, "\n".join(problems) + gateway.log()[-3000:]
        time.sleep(2)  # a report (every second) and a stats point (every 0.5 s)
        stats = gateway_stats(services, "gw-part")
        assert stats["received"] == result.acked_messages, (stats, result.summary())
    finally:
        gateway.stop()


def test_a_new_board_is_heard_and_a_changed_worker_count_stores_each_message_once(
    tmp_path: Path,
) -> None:
    # Workers take their boards by per-board subscriptions (service/partition.py): a board
    # added to the registry is heard after a reload, and after 2 -> 3 workers every message
    # is received once (the old owners let go of the boards that moved).
    services = start_services(tmp_path / "stack")
    devices = plan_devices(30)
    (tmp_path / "devices.csv").write_text(registry_csv(devices[:-1]))
    try:
        _partition_round(tmp_path, services, 2, devices, add_board=True)
        _partition_round(tmp_path, services, 3, devices, add_board=False)
        owners = [load_state(tmp_path / "spool" / f"worker-{i}").granted for i in range(3)]
        assert all(owners), owners
    finally:
        stop_services(services)
