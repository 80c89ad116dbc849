"""`urbanpulse provision`: registry, config.json (checked by the firmware's own validator under
MicroPython), broker credentials in a real Mosquitto password/ACL file, all or nothing."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from support.gateway_harness import (
    count_points,
    gateway_settings,
    running_gateway,
)
from support.services import Services, free_port
from support.waiting import wait_until
from urbanpulse.broker.policy import acl
from urbanpulse.contract.vocabulary import KINDS
from urbanpulse.devtools import hostboard
from urbanpulse.field.boardconfig import SENSORS
from urbanpulse.field.bundle import find_tool, firmware_source
from urbanpulse.field.provision import fingerprint

PY = sys.executable


def urbanpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "urbanpulse", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def provision(tmp_path: Path, device_id: str, *extra: str, kind: str = "air",
              auth: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["provision", device_id, "--kind", kind, "--district", "north",
            "--wifi-ssid", "city-iot", "--mqtt-host", "10.0.0.5",
            "--registry", str(tmp_path / "devices.csv"), "--out-dir", str(tmp_path / "boards")]
    if auth:
        args += ["--passwd-file", str(tmp_path / "passwd"), "--acl-file", str(tmp_path / "acl")]
    else:
        args.append("--no-auth")
    return urbanpulse(*args, *extra)


def files(tmp_path: Path) -> dict[str, bytes]:
    """Every file under tmp_path, for before/after comparisons."""
    return {str(p.relative_to(tmp_path)): p.read_bytes()
            for p in sorted(tmp_path.rglob("*")) if p.is_file()}


def test_backup_brokers_go_into_the_boards_config(tmp_path: Path) -> None:
    result = provision(tmp_path, "air-north-07", "--simulated", "--mqtt-backup-host",
                       "10.0.0.6", "--mqtt-backup-host", "mqtt3.city.example")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "boards" / "air-north-07" / "config.json").read_text())
    assert (config["mqtt"]["host"], config["mqtt"]["backup_hosts"]) == (
        "10.0.0.5", ["10.0.0.6", "mqtt3.city.example"])
    refused = provision(tmp_path, "air-north-08", "--simulated", *(
        a for h in range(5) for a in ("--mqtt-backup-host", f"10.0.1.{h}")))
    assert refused.returncode == 2 and "mqtt.backup_hosts" in refused.stderr


def test_provision_writes_everything_and_prints_a_label(tmp_path: Path) -> None:
    result = provision(tmp_path, "air-north-01", "--site", "Town Hall", "--lat", "52.3702",
                       "--lon", "4.8952", "--interval", "120", "--simulated")
    assert result.returncode == 0, result.stderr
    config_path = tmp_path / "boards" / "air-north-01" / "config.json"
    config = json.loads(config_path.read_text())
    password = config["mqtt"]["password"]
    label = result.stdout.split("\n\n")[0].splitlines()
    assert label == [
        "id        air-north-01",
        "kind      air",
        "district  north",
        "site      Town Hall",
        "location  52.37020, 4.89520",
        "interval  120 s",
        "MQTT user air-north-01",
        "commands  UNSIGNED accepted",
        f"config    {fingerprint(config_path.read_text())}",
    ]
    assert password not in result.stdout + result.stderr
    assert "password_file" in result.stderr and "acl_file" in result.stderr

    assert config["device_id"] == "air-north-01" and config["kind"] == "air"
    assert config["wifi"] == {"ssid": "city-iot", "password": None}
    assert config["mqtt"]["host"] == "10.0.0.5" and config["mqtt"]["username"] == "air-north-01"
    assert len(password) >= 24
    assert config["sample_interval_s"] == config["publish_interval_s"] == 120
    assert config["sensors"] == [{"type": "sim", "kind": "air"}]
    # Secrets inside: only the owner may read it, as the password file.
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600

    assert (tmp_path / "devices.csv").read_text().splitlines()[1].startswith(
        "air-north-01,air,north,Town Hall,52.3702,4.8952,120.0")
    assert (tmp_path / "passwd").read_text().startswith("air-north-01:$7$")
    # The policy's ACL: every board by pattern, never its own cmd topic to write.
    assert (tmp_path / "acl").read_text() == acl("city")
    assert "pattern read city/%u/cmd\n" in acl("city") and "readwrite" not in acl("city")

    shown = provision(tmp_path, "air-north-02", "--simulated", "--show-secret")
    assert shown.returncode == 0, shown.stderr
    config2 = json.loads((tmp_path / "boards" / "air-north-02" / "config.json").read_text())
    assert f"MQTT pass {config2['mqtt']['password']}" in shown.stdout
    assert config2["mqtt"]["password"] != password


def test_a_registered_id_is_refused_unless_forced(tmp_path: Path) -> None:
    assert provision(tmp_path, "soil-park-01", "--simulated", kind="soil").returncode == 0
    before = files(tmp_path)
    again = provision(tmp_path, "soil-park-01", "--simulated", kind="soil")
    assert again.returncode == 2
    assert ("soil-park-01 not provisioned: soil-park-01 is already registered in "
            f"{tmp_path / 'devices.csv'}; use --force") in again.stderr
    assert files(tmp_path) == before

    forced = provision(tmp_path, "soil-park-01", "--simulated", "--force", kind="soil")
    assert forced.returncode == 0, forced.stderr
    assert "soil-park-01 re-provisioned (new password)" in forced.stdout
    after = files(tmp_path)
    assert after["passwd"] != before["passwd"]
    assert after["passwd"].count(b"soil-park-01:") == 1
    assert after["acl"] == before["acl"]  # the policy, unchanged
    assert after["devices.csv"].count(b"soil-park-01") == 1
    old = json.loads(before["boards/soil-park-01/config.json"])["mqtt"]["password"]
    new = json.loads(after["boards/soil-park-01/config.json"])["mqtt"]["password"]
    assert old != new


def test_what_the_firmware_would_refuse_is_not_provisioned(tmp_path: Path) -> None:
    assert provision(tmp_path, "air-north-01", "--simulated").returncode == 0
    before = files(tmp_path)
    bad_port = provision(tmp_path, "air-north-02", "--simulated", "--mqtt-port", "70000")
    assert bad_port.returncode == 2
    # The board's own words, from its validator run under MicroPython.
    assert ("air-north-02 not provisioned: the firmware would refuse this config: "
            "config.json: mqtt.port: must be an integer 1..65535, got 70000") in bad_port.stderr
    sensors = tmp_path / "sensors.json"
    sensors.write_text('[{"type": "geiger", "pin": 4}]')
    bad_sensor = provision(tmp_path, "air-north-03", "--sensors", str(sensors))
    assert bad_sensor.returncode == 2
    assert "the firmware would refuse this config: sensors[0].type: must be one of" \
        in bad_sensor.stderr
    bad_id = provision(tmp_path, "Air_North", "--simulated")
    assert bad_id.returncode == 2
    assert "device_id='Air_North'" in bad_id.stderr
    no_mount = provision(tmp_path, "water-north-01", kind="water")
    assert no_mount.returncode == 2
    assert "a water board needs --mount-cm" in no_mount.stderr
    assert files(tmp_path) == {**before, "sensors.json": sensors.read_bytes()}


def test_a_failed_write_puts_every_file_back(tmp_path: Path) -> None:
    assert provision(tmp_path, "air-north-01", "--simulated").returncode == 0
    before = files(tmp_path)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the registry's folder should be\n")
    result = urbanpulse(
        "provision", "air-north-02", "--kind", "air", "--district", "north", "--simulated",
        "--wifi-ssid", "x", "--mqtt-host", "10.0.0.5", "--passwd-file", str(tmp_path / "passwd"),
        "--acl-file", str(tmp_path / "acl"), "--out-dir", str(tmp_path / "boards"),
        "--registry", str(blocked / "devices.csv"))
    assert result.returncode == 2
    assert "nothing provisioned, files restored" in result.stderr
    assert files(tmp_path) == {**before, "not-a-dir": blocked.read_bytes()}


@pytest.mark.parametrize("kind", KINDS)
def test_standard_wiring_of_every_kind_passes_the_firmware_check(
    tmp_path: Path, kind: str
) -> None:
    extra = ["--mount-cm", "450", "--threshold-cm", "300"] if kind == "water" else []
    result = provision(tmp_path, f"{kind}-north-01", "--lat", "52.37", "--lon", "4.89",
                       *extra, kind=kind, auth=False)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "boards" / f"{kind}-north-01" / "config.json").read_text())
    assert [s["type"] for s in config["sensors"]] == [s["type"] for s in SENSORS[kind]]
    assert config["mqtt"]["username"] is None and config["mqtt"]["password"] is None
    if kind == "water":
        assert config["sensors"][0]["mount_cm"] == 450
        assert "300.0" in (tmp_path / "devices.csv").read_text()
    if kind == "streetlight":
        assert (config["sensors"][0]["lat"], config["sensors"][0]["lon"]) == (52.37, 4.89)


# -- against a real Mosquitto using the files provision wrote -------------------------------
@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does: re-read the password and ACL files."""
        self.process.send_signal(signal.SIGHUP)


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    assert binary, "mosquitto is not installed: run `make setup`"
    port = free_port()
    (tmp_path / "passwd").touch()
    (tmp_path / "acl").touch()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
        f"persistence false\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    yield Broker(port, process)
    process.terminate()
    process.wait(10)
    log.close()


def mqtt5(port: int, username: str, password: str) -> tuple[mqtt.Client, ReasonCode]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    codes: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, rc: ReasonCode,
                   _p: Properties | None) -> None:
        codes.append(rc)

    client.on_connect = on_connect
    deadline = time.monotonic() + 15
    while True:  # the broker may still be starting
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    client.loop_start()
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert codes, "no CONNACK"
    return client, codes[0]


def puback(client: mqtt.Client, topic: str) -> ReasonCode:
    codes: list[ReasonCode] = []

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, rc: ReasonCode,
                   _p: Properties | None) -> None:
        codes.append(rc)

    client.on_publish = on_publish
    client.publish(topic, b"{}", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        time.sleep(0.02)
    return codes[0]


def test_the_broker_takes_the_board_and_confines_it_to_its_topics(
    tmp_path: Path, secured_broker: Broker
) -> None:
    result = provision(tmp_path, "park-south-01", "--simulated", kind="parking")
    assert result.returncode == 0, result.stderr
    password = json.loads(
        (tmp_path / "boards" / "park-south-01" / "config.json").read_text())["mqtt"]["password"]
    # The broker started with empty files; provisioning changed them under it.
    secured_broker.reload()
    deadline = time.monotonic() + 15
    while True:
        client, rc = mqtt5(secured_broker.port, "park-south-01", password)
        if not rc.is_failure or time.monotonic() > deadline:
            break
        client.loop_stop()
        time.sleep(0.2)
    try:
        assert not rc.is_failure, rc
        assert not puback(client, "city/park-south-01/telemetry").is_failure
        denied = puback(client, "city/park-south-02/telemetry")
        assert denied.is_failure and str(denied) == "Not authorized"
    finally:
        client.disconnect()
        client.loop_stop()

    wrong, rc = mqtt5(secured_broker.port, "park-south-01", password + "x")
    wrong.loop_stop()
    assert rc.is_failure and str(rc) in ("Not authorized", "Bad user name or password")


@pytest.mark.services
def test_a_provisioned_firmware_board_reaches_the_gateway_through_the_acl(
    tmp_path: Path, secured_broker: Broker, influx: Services, client_id: str
) -> None:
    """The files provision wrote (the password and the policy's ACL), the real firmware with
    the credentials from its config.json, and the real gateway with its own user."""
    (tmp_path / "acl").write_text("# an older file, put right by provision\n")
    gateway_password = "gateway-secret"
    subprocess.run(["mosquitto_passwd", str(tmp_path / "passwd"), "urbanpulse-gateway"],
                   input=f"{gateway_password}\n{gateway_password}\n", text=True,
                   capture_output=True, check=True)
    result = urbanpulse(
        "provision", "noise-acl-01", "--kind", "noise", "--district", "centre", "--simulated",
        "--interval", "1", "--wifi-ssid", "lab", "--mqtt-host", "127.0.0.1",
        "--mqtt-port", str(secured_broker.port), "--registry", str(tmp_path / "devices.csv"),
        "--out-dir", str(tmp_path / "boards"), "--passwd-file", str(tmp_path / "passwd"),
        "--acl-file", str(tmp_path / "acl"))
    assert result.returncode == 0, result.stderr
    secured_broker.reload()

    board_dir = tmp_path / "boards" / "noise-acl-01"
    micropython = find_tool("micropython")
    assert micropython
    fw = firmware_source()
    env = dict(os.environ, MICROPYPATH=f"{fw / 'host'}:{fw}:.frozen")
    broker_services = replace(influx, mqtt_port=secured_broker.port)
    base = gateway_settings(broker_services, tmp_path / "devices.csv", client_id)
    settings = base.model_copy(update={"mqtt": base.mqtt.model_copy(update={
        "username": "urbanpulse-gateway", "password": SecretStr(gateway_password)})})
    with running_gateway(settings):
        with (board_dir / "console.log").open("wb") as console:
            board = hostboard.launch([micropython, str(fw / "main.py")], board_dir, env,
                                     console)
        try:
            wait_until(lambda: count_points(influx, "noise", "laeq") >= 2, timeout_s=60,
                       what="the board's readings stored through the secured broker")
        finally:
            hostboard.stop(board)
            board.wait(30)
    console_text = (board_dir / "console.log").read_text()
    assert f"mqtt connected to 127.0.0.1:{secured_broker.port}" in console_text, console_text


def test_secrets_go_outside_the_checkout_by_default_and_are_private_from_the_start(
    tmp_path: Path
) -> None:
    """No --out-dir: the technician's data folder, never the working directory (a checkout);
    the folder 0700 and the config 0600 as created (the umask would give 0644 first)."""
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "urbanpulse", "provision", "soil-home-01", "--kind", "soil",
         "--district", "north", "--simulated", "--wifi-ssid", "lab", "--mqtt-host",
         "127.0.0.1", "--no-auth", "--registry", str(tmp_path / "devices.csv")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**os.environ, "XDG_DATA_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    config = home / "urbanpulse" / "boards" / "soil-home-01" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert not (tmp_path / "provisioned").exists()
