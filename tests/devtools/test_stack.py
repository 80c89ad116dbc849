"""urbanpulse.devtools.stack against the real mosquitto and influxd, in a tmp state dir, on
free ports."""

from __future__ import annotations

import functools
import os
import queue
import re
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.services import (
    NOT_INSTALLED,
    InfluxQueryError,
    free_ports,
    influx_drop_and_create,
    influx_query,
    influx_write,
    services_for,
    start_services,
    stop_services,
)
from urbanpulse.devtools import stack

pytestmark = pytest.mark.services

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[stack.StackSettings]:
    mqtt_port, influx_port, rpc_port = free_ports(3)
    s = stack.StackSettings(
        state_dir=tmp_path / "state",
        mqtt_port=mqtt_port,
        influx_port=influx_port,
        influx_rpc_port=rpc_port,
    )
    yield s
    stack.down(s)


# --- helpers ----------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def listening(pid: int) -> set[tuple[str, str, int]]:
    """(protocol, ip, port) of every TCP listener and UDP socket the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with_target = os.readlink(fd)
        if m := re.fullmatch(r"socket:\[(\d+)\]", with_target):
            inodes.add(m.group(1))
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if inode not in inodes or (proto.startswith("tcp") and state != "0A"):
                continue
            hex_ip, hex_port = local.split(":")
            if len(hex_ip) == 8:
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_ip)[::-1])
            else:
                raw = bytes.fromhex(hex_ip)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, words)
            found.add((proto.rstrip("6"), ip, int(hex_port, 16)))
    return found


@dataclass
class MqttSession:
    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage]
    session_present: bool

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(10), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def receive(self, timeout_s: float = 10) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no MQTT message within {timeout_s} s") from None


@contextmanager
def mqtt_session(port: int, client_id: str, clean_session: bool = True) -> Iterator[MqttSession]:
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    connected = threading.Event()
    flags: list[bool] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
    )

    def on_connect(_c: mqtt.Client, _u: Any, f: mqtt.ConnectFlags, *_: Any) -> None:
        flags.append(f.session_present)
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, msg: messages.put(msg)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        yield MqttSession(client, messages, flags[0])
    finally:
        client.disconnect()
        client.loop_stop()


def by_name(states: list[stack.ServiceState]) -> dict[str, stack.ServiceState]:
    return {s.name: s for s in states}


def pid_file(settings: stack.StackSettings, name: str) -> Path:
    service_dir = "mosquitto" if name == "mosquitto" else "influxdb"
    return settings.state_dir / service_dir / f"{name}.pid"


# --- tests --------------------------------------------------------------------------------------


def test_up_starts_both_services_and_they_answer(settings: stack.StackSettings) -> None:
    states = by_name(stack.up(settings))

    assert set(states) == {"mosquitto", "influxdb"}
    mosquitto, influx = states["mosquitto"], states["influxdb"]
    assert mosquitto.running and influx.running
    assert mosquitto.address == f"127.0.0.1:{settings.mqtt_port}"
    assert influx.address == f"http://127.0.0.1:{settings.influx_port}"
    assert mosquitto.pid is not None and alive(mosquitto.pid)
    assert influx.pid is not None and alive(influx.pid)
    for state in (mosquitto, influx):
        assert state.pid is not None
        # Runs as the invoking user (mosquitto would otherwise switch to `mosquitto`).
        assert Path(f"/proc/{state.pid}").stat().st_uid == os.geteuid()
        assert state.log_file.is_file()
        assert state.log_file.is_relative_to(settings.state_dir)

    # Each listens on 127.0.0.1 on its own ports only, none of the default ports.
    assert listening(mosquitto.pid) == {("tcp", "127.0.0.1", settings.mqtt_port)}
    assert listening(influx.pid) == {
        ("tcp", "127.0.0.1", settings.influx_port),
        ("tcp", "127.0.0.1", settings.influx_rpc_port),
    }

    # An MQTT round trip.
    with mqtt_session(settings.mqtt_port, "test-roundtrip") as session:
        session.subscribe("urbanpulse/test/#")
        session.publish("urbanpulse/test/ping", b"hello")
        message = session.receive()
    assert (message.topic, message.payload) == ("urbanpulse/test/ping", b"hello")

    # The database exists: a point written with ms precision reads back.
    s = services_for(settings)
    influx_write(s, f"air,device=sensor-01 pm25=12.5 {NOW_MS}")
    series = influx_query(s, "SELECT pm25, device FROM air")
    assert series == [
        {
            "name": "air",
            "columns": ["time", "pm25", "device"],
            "values": [[NOW_MS, 12.5, "sensor-01"]],
        }
    ]

    # A second up starts nothing new; status agrees.
    again = by_name(stack.up(settings))
    assert {n: (s.pid, s.running) for n, s in again.items()} == {
        "mosquitto": (mosquitto.pid, True),
        "influxdb": (influx.pid, True),
    }
    assert by_name(stack.status(settings)) == again

    table = stack.format_status(list(again.values()))
    assert re.search(
        rf"mosquitto\s+running\s+{mosquitto.pid}\s+127\.0\.0\.1:{settings.mqtt_port}", table
    )
    assert re.search(rf"influxdb\s+running\s+{influx.pid}\s+http://127\.0\.0\.1:", table)


def test_generated_configs_stay_in_the_state_dir_and_influxd_accepts_them(
    settings: stack.StackSettings,
) -> None:
    stack.up(settings)
    root = settings.state_dir.resolve()
    mosquitto_conf = (root / "mosquitto" / "mosquitto.conf").read_text()
    influx_conf = root / "influxdb" / "influxdb.conf"

    assert f"listener {settings.mqtt_port} 127.0.0.1\n" in mosquitto_conf
    assert f"persistence_location {root}/mosquitto/data\n" in mosquitto_conf
    assert f"log_dest file {root}/mosquitto/log/mosquitto.log\n" in mosquitto_conf
    assert "max_inflight_messages 1000\n" in mosquitto_conf
    assert "max_queued_messages 1000000\n" in mosquitto_conf

    # influxd 1.x silently ignores unknown keys: check the effective values it reports.
    effective = subprocess.run(
        ["influxd", "config", "-config", str(influx_conf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in effective.splitlines():
        if m := re.fullmatch(r"\s*\[+([\w-]+)\]+\s*", line):
            current = sections.setdefault(m.group(1), {})
        elif m := re.fullmatch(r"\s*([\w-]+) = (.*)", line):
            current.setdefault(m.group(1), m.group(2))
    assert sections[""]["reporting-enabled"] == "false"
    assert sections[""]["bind-address"] == f'"127.0.0.1:{settings.influx_rpc_port}"'
    assert sections["meta"]["dir"] == f'"{root}/influxdb/meta"'
    assert sections["data"]["dir"] == f'"{root}/influxdb/data"'
    assert sections["data"]["wal-dir"] == f'"{root}/influxdb/wal"'
    assert sections["data"]["query-log-enabled"] == "false"
    assert sections["http"]["bind-address"] == f'"127.0.0.1:{settings.influx_port}"'
    assert sections["http"]["log-enabled"] == "false"
    assert sections["monitor"]["store-enabled"] == "false"
    for section in ("graphite", "collectd", "opentsdb", "udp", "ifql"):
        assert sections[section]["enabled"] == "false", section


def test_mosquitto_and_influxdb_data_survive_down_and_up(settings: stack.StackSettings) -> None:
    first = by_name(stack.up(settings))
    s = services_for(settings)
    # A persistent session (as the gateway uses) subscribed, then gone away.
    with mqtt_session(settings.mqtt_port, "test-gateway", clean_session=False) as gateway:
        gateway.subscribe("urbanpulse/queued/#")
    with mqtt_session(settings.mqtt_port, "test-board") as board:
        board.publish("urbanpulse/retained/status", b"online", retain=True)
        board.publish("urbanpulse/queued/t1", b"queued-while-away")
    influx_write(s, f"air,device=sensor-01 pm25=7 {NOW_MS}")

    stopped = by_name(stack.down(settings))
    assert not stopped["mosquitto"].running and not stopped["influxdb"].running
    second = by_name(stack.up(settings))
    assert second["mosquitto"].pid != first["mosquitto"].pid
    assert second["influxdb"].pid != first["influxdb"].pid

    with mqtt_session(settings.mqtt_port, "test-viewer") as viewer:
        viewer.subscribe("urbanpulse/retained/#")
        retained = viewer.receive()
    assert (retained.topic, retained.payload, retained.retain) == (
        "urbanpulse/retained/status",
        b"online",
        True,
    )
    with mqtt_session(settings.mqtt_port, "test-gateway", clean_session=False) as gateway:
        assert gateway.session_present
        queued = gateway.receive()  # no new SUBSCRIBE: the session kept it
    assert (queued.topic, queued.payload) == ("urbanpulse/queued/t1", b"queued-while-away")

    assert influx_query(s, "SELECT pm25 FROM air")[0]["values"] == [[NOW_MS, 7]]


def test_down_stops_our_processes_and_keeps_data(settings: stack.StackSettings) -> None:
    pids = [state.pid for state in stack.up(settings)]

    states = stack.down(settings)

    assert [(s.name, s.pid, s.running) for s in states] == [
        ("mosquitto", None, False),
        ("influxdb", None, False),
    ]
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not pid_file(settings, "mosquitto").exists()
    assert not pid_file(settings, "influxdb").exists()
    root = settings.state_dir
    assert (root / "mosquitto" / "data" / "mosquitto.db").is_file()
    assert (root / "influxdb" / "meta" / "meta.db").is_file()
    assert all(s.log_file.is_file() for s in states)
    # Idempotent.
    assert stack.down(settings) == states
    assert stack.status(settings) == states


def test_down_never_kills_a_process_it_did_not_start(settings: stack.StackSettings) -> None:
    stack.up(settings)
    stack.down(settings)
    decoy = subprocess.Popen(["sleep", "300"])
    try:
        # A stale pid file whose pid now belongs to someone else.
        for name in ("mosquitto", "influxdb"):
            pid_file(settings, name).write_text(f"{decoy.pid}\n")
        assert [(s.pid, s.running) for s in stack.status(settings)] == [(decoy.pid, False)] * 2

        states = stack.down(settings)

        assert decoy.poll() is None, "down killed a process it did not start"
        assert [(s.pid, s.running) for s in states] == [(None, False)] * 2
        # ... and up does not mistake it for a running service either.
        restarted = stack.up(settings)
        assert all(s.running and s.pid not in (None, decoy.pid) for s in restarted)
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


@pytest.mark.parametrize(
    ("taken", "bind_host"),
    [("mqtt_port", "127.0.0.1"), ("influx_port", "127.0.0.1"), ("influx_rpc_port", "0.0.0.0")],
)
def test_up_names_a_port_taken_by_a_foreign_listener(
    settings: stack.StackSettings, taken: str, bind_host: str
) -> None:
    port: int = getattr(settings, taken)
    with socket.socket() as foreign:
        foreign.bind((bind_host, port))
        foreign.listen()
        with pytest.raises(stack.StackError, match=rf"port {port} is in use by another process"):
            stack.up(settings)
    # Nothing was left half-started.
    assert [(s.pid, s.running) for s in stack.status(settings)] == [(None, False)] * 2


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("run: open meta: permission denied", r"influxd exited at start-up \(exit code 3\)"),
        (
            "run: open server: listen tcp 127.0.0.1:{rpc}: bind: address already in use",
            r"port {rpc} is in use by another process; influxd exited at start-up",
        ),
    ],
)
def test_a_service_dying_at_start_up_is_reported_with_its_log(
    settings: stack.StackSettings, tmp_path: Path, output: str, expected: str
) -> None:
    rpc = settings.influx_rpc_port
    fake = tmp_path / "bin" / "influxd"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho 'starting'\necho '{output.format(rpc=rpc)}' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    broken = replace(settings, influxd_bin=str(fake))

    with pytest.raises(stack.StackError) as excinfo:
        stack.up(broken)

    message = str(excinfo.value)
    assert re.search(expected.format(rpc=rpc), message), message
    assert "last lines of its log" in message
    assert "starting" in message and output.format(rpc=rpc) in message
    # The mosquitto this up started was stopped again.
    assert [(s.pid, s.running) for s in stack.status(settings)] == [(None, False)] * 2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"mosquitto_bin": "/nonexistent/mosquitto"},
            "mosquitto is not installed (no executable /nonexistent/mosquitto): "
            "run `make setup` (apt-get install mosquitto)",
        ),
        (
            {"influxd_bin": "no-such-influxd"},
            "no-such-influxd is not installed (`no-such-influxd` is neither on PATH nor in",
        ),
    ],
)
def test_a_missing_binary_is_reported_clearly(
    settings: stack.StackSettings, override: dict[str, str], expected: str
) -> None:
    with pytest.raises(stack.StackError) as excinfo:
        stack.up(replace(settings, **override))  # type: ignore[arg-type]
    assert expected in str(excinfo.value)
    assert [(s.pid, s.running) for s in stack.status(settings)] == [(None, False)] * 2


def test_status_and_down_of_a_stack_never_started(tmp_path: Path) -> None:
    settings = stack.StackSettings(state_dir=tmp_path / "never", mqtt_port=1, influx_port=2)
    expected = [("mosquitto", None, False), ("influxdb", None, False)]
    assert [(s.name, s.pid, s.running) for s in stack.status(settings)] == expected
    assert [(s.name, s.pid, s.running) for s in stack.down(settings)] == expected
    assert not settings.state_dir.exists()
    assert "stopped" in stack.format_status(stack.status(settings))


def test_service_helpers(tmp_path: Path) -> None:
    s = start_services(tmp_path / "state")
    try:
        assert s.mqtt_host == "127.0.0.1"
        assert all(state.running for state in stack.status(s.settings))
        influx_write(s, f"air,device=sensor-01 pm25=3 {NOW_MS}")
        assert influx_query(s, "SELECT pm25 FROM air")[0]["values"] == [[NOW_MS, 3]]

        influx_drop_and_create(s)

        assert influx_query(s, "SELECT pm25 FROM air") == []
        with pytest.raises(InfluxQueryError, match="error parsing query"):
            influx_query(s, "SELEC nonsense")
    finally:
        stop_services(s)
    assert not any(state.running for state in stack.status(s.settings))


def test_start_services_fails_rather_than_skips_without_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        stack,
        "StackSettings",
        functools.partial(stack.StackSettings, mosquitto_bin="/nonexistent/mosquitto"),
    )
    with pytest.raises(pytest.fail.Exception) as excinfo:
        start_services(tmp_path / "state")
    assert NOT_INSTALLED in str(excinfo.value)
