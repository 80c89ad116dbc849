"""`urbanpulse stack up --secure` as an operator uses it: the stack makes its CA, passwords and
gateway configuration; the gateway runs from that configuration; a board provisioned into
the stack's password file connects over TLS with the credentials of its config.json, and its
reading is stored. Real processes, real TLS."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.boardrun import Supervisor, ack_of
from support.gateway_harness import running_gateway
from support.hostboards import Board, Recorder
from support.services import free_ports
from support.waiting import wait_until
from urbanpulse.broker.policy import OPERATOR_USER
from urbanpulse.config import InfluxSettings, load_settings
from urbanpulse.contract.signing import load_private, write_private
from urbanpulse.devtools.fleet import EXIT_RESET, TLS_HEAP, board_heap
from urbanpulse.devtools.pki import make_pki
from urbanpulse.field.commands import command_for
from urbanpulse.influx.writer import V1Writer
from urbanpulse.registry.keystore import load_keys

pytestmark = pytest.mark.services


def urbanpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def secure_stack(tmp_path: Path) -> Iterator[list[str]]:
    ports = [str(p) for p in free_ports(3)]
    options = ["--state-dir", str(tmp_path / "stack"), "--mqtt-port", ports[0],
               "--influx-port", ports[1], "--influx-rpc-port", ports[2]]
    up = urbanpulse("stack", "up", "--secure", *options)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield options
    finally:
        urbanpulse("stack", "down", *options)


def provision(secure: Path, tmp_path: Path, device_id: str, *extra: str) -> dict[str, Any]:
    """A board provisioned from the stack's gateway configuration: TLS with the stack's CA,
    the command key, its device key in the key store, its user in the password file."""
    result = urbanpulse(
        "provision", device_id, "--kind", "noise", "--district", "centre", "--simulated",
        "--interval", "1", "--wifi-ssid", "lab", "--config", str(secure / "urbanpulse.toml"),
        "--passwd-file", str(secure / "mosquitto.passwd"), "--out-dir", str(tmp_path / "boards"),
        # The stack's broker certificate names localhost; the board dials 127.0.0.1.
        "--mqtt-tls-hostname", "localhost", *extra)
    assert result.returncode == 0, result.stderr
    assert "warning: no" not in result.stderr, result.stderr
    config: dict[str, Any] = json.loads(
        (tmp_path / "boards" / device_id / "config.json").read_text())
    return config


def test_a_provisioned_firmware_board_speaks_tls_and_takes_only_signed_commands(
    secure_stack: list[str], tmp_path: Path
) -> None:
    secure = tmp_path / "stack" / "secure"
    for private in (secure / "server.key", secure / "mosquitto.passwd",
                    *sorted((secure / "secrets").iterdir())):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    config = provision(secure, tmp_path, "noise-sec-01")
    assert config["mqtt"]["tls"] == {"ca_file": "ca.der", "hostname": "localhost"}
    assert config["cmd_key"] == (secure / "command.pub").read_text().strip()
    assert load_keys(secure / "secrets" / "device-keys.json")["noise-sec-01"].hex() == \
        config["device_key"]
    # Mosquitto reads its password file again on SIGHUP, as `systemctl reload` sends it.
    assert urbanpulse("stack", "reload", "--secure", *secure_stack).returncode == 0
    settings = load_settings(secure / "urbanpulse.toml")
    board = Board(tmp_path / "boards" / "noise-sec-01", config)
    board.heap = board_heap(config)
    assert board.heap == TLS_HEAP

    operator = Recorder(settings.mqtt.port, topic="city/+/cmd/ack", ca_file=secure / "ca.crt",
                        username=OPERATOR_USER,
                        password=(secure / "secrets" / f"mqtt-{OPERATOR_USER}").read_text().strip())
    with running_gateway(settings) as gateway:
        watcher = gateway.key_watcher
        assert watcher is not None and set(watcher.keys) == {"noise-sec-01"}
        sup = Supervisor(board).start()
        try:
            grafana = V1Writer(InfluxSettings(
                url=settings.influx.url, database=settings.influx.database,
                username="urbanpulse-grafana",
                password=(secure / "secrets" / "influx-urbanpulse-grafana").read_text().strip()))
            wait_until(lambda: grafana.query('SELECT laeq FROM "noise"'), timeout_s=30,
                       what="the board's readings stored, over TLS")
            # Sealed with the device key provisioning made (CONTRACT.md v2), and archived.
            wait_until(lambda: grafana.query('SELECT verified FROM "device_integrity"'), 30,
                       "the board's sealed messages counted")
            assert list((settings.archive.path / "main").glob("*.open"))
            tools = ["--config", str(secure / "operator.toml"), "--wait", "20"]
            sent = urbanpulse("cmd", "send", "noise-sec-01", "identify", "seconds=1",
                              "--key-file", str(secure / "secrets" / "command.key"), *tools)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert sent.stdout.split() == ["noise-sec-01", "ok"]
            # The operator's broker user, another key: the board refuses it.
            write_private(tmp_path / "stolen.key", Ed25519PrivateKey.generate())
            forged = urbanpulse("cmd", "send", "noise-sec-01", "reboot",
                                "--key-file", str(tmp_path / "stolen.key"), *tools)
            assert forged.returncode == 1
            assert forged.stdout.split() == ["noise-sec-01", "refused:", "bad_signature"]

            # Played by hand with the operator's broker user: each refused, and why.
            key = load_private(secure / "secrets" / "command.key")
            dev = "noise-sec-01"

            # One operator identity: `cmd send` above took the broker session (client id
            # bound to the user name); this client comes back after a second, subscribed anew.
            wait_until(operator.client.is_connected, 10, "the operator's client back")
            assert operator.subscribed(10), "the operator's subscription"

            def publish(payload: bytes, retain: bool = False) -> None:
                operator.client.publish(f"city/{dev}/cmd", payload, qos=1,
                                        retain=retain).wait_for_publish(10)

            once = command_for(dev, "identify", {"seconds": 1}, key, "c-once")
            publish(once)
            assert ack_of(operator, dev, "c-once") == {"id": "c-once", "ok": True}
            publish(once)
            wait_until(lambda: [a for a in operator.docs(dev, "cmd/ack")
                                if a.get("id") == "c-once"][1:] == [
                {"id": "c-once", "ok": False, "error": "replayed"}], 20, "the replay refused")
            publish(command_for(dev, "identify", {}, key, "c-late", ttl_s=-60))
            publish(command_for("noise-sec-99", "identify", {}, key, "c-other"))
            publish(b'{"id":"c-bare","op":"reboot"}')
            for cid, why in (("c-late", "expired"), ("c-other", "wrong_device"),
                             ("c-bare", "unsigned")):
                assert ack_of(operator, dev, cid) == {"id": cid, "ok": False, "error": why}
            # Retained, it reaches the board at every connect: refused however well signed.
            publish(command_for(dev, "flush", {}, key, "c-kept"), retain=True)
            publish(command_for(dev, "reboot", {}, key, "c-boot"))
            assert ack_of(operator, dev, "c-boot")["ok"] is True
            # Carried out once live (a subscriber gets it unflagged), then refused at the
            # connect after the reboot.
            wait_until(lambda: {"id": "c-kept", "ok": False, "error": "retained"} in [
                a for a in operator.docs(dev, "cmd/ack") if a.get("id") == "c-kept"], 40,
                "the retained command refused after the reboot")
            publish(b"", retain=True)
            assert sup.codes == [EXIT_RESET], sup.codes

            # A board provisioned while the gateway runs: its key store is read again.
            provision(secure, tmp_path, "noise-sec-05")
            wait_until(lambda: "noise-sec-05" in watcher.keys, 20,
                       "the gateway's key store reloaded")
            # The gateway's own configuration is not an operator's.
            taken = urbanpulse("cmd", "send", "noise-sec-01", "flush", "--config",
                               str(secure / "urbanpulse.toml"), "--key-file",
                               str(secure / "secrets" / "command.key"))
            assert taken.returncode == 2 and "gateway's own broker identity" in taken.stderr
        finally:
            sup.stop()
            operator.close()
    console = board.console()
    assert "mqtt connected to 127.0.0.1" in console
    assert "identify: blinking the status LED for 1 s" in console
    assert "refused: bad_signature" in console
    assert "Traceback" not in console


def test_a_board_trusts_only_the_citys_ca_and_the_brokers_name_and_waits_for_the_time(
    secure_stack: list[str], tmp_path: Path
) -> None:
    """A broker with a certificate of another CA, or of another name, gets nothing from the
    board: not its password, not a reading. A board without the time (an ESP32 starts at
    2000-01-01) makes no handshake until NTP has set its clock."""
    secure = tmp_path / "stack" / "secure"
    pki = make_pki(tmp_path / "other-pki")
    stranger = provision(secure, tmp_path, "noise-sec-02", "--mqtt-ca", str(pki.ca_cert))
    misnamed = provision(secure, tmp_path, "noise-sec-03", "--mqtt-tls-hostname",
                         "broker.elsewhere.example")
    late = provision(secure, tmp_path, "noise-sec-04")
    late["host_clock"] = {"scale": 1, "start_ms": None}  # the clock unset until NTP
    assert urbanpulse("stack", "reload", "--secure", *secure_stack).returncode == 0
    boards = [Board(tmp_path / "boards" / c["device_id"], c) for c in (stranger, misnamed, late)]
    (boards[2].folder / "ntp_down").touch()
    for board in boards:
        board.heap = board_heap(board.config)
        board.start()
    try:
        wait_until(lambda: all(b.console().count(" failed: ") >= 2 for b in boards[:2]), 30,
                   "connect attempts refused by the boards' TLS")
        wait_until(lambda: boards[2].console().count("waiting for the clock") >= 2, 20,
                   "the board without the time waiting")
        assert "mqtt connected" not in boards[2].console()
        (boards[2].folder / "ntp_down").unlink()
        wait_until(lambda: "mqtt connected" in boards[2].console(), 30,
                   "the connect once NTP answered")
    finally:
        for board in boards:
            board.kill()
    for board, why in zip(boards, ("is not correctly signed by the trusted CA",
                                   "Common Name (CN) does not match"), strict=False):
        console = board.console()
        assert "mqtt connected" not in console, console
        assert f"failed: tls: The certificate {why}" in console, console
    for board in boards:
        assert "Traceback" not in board.console(), board.console()


def test_the_gateways_workers_log_in_as_users_of_their_own(
    secure_stack: list[str], tmp_path: Path
) -> None:
    # The secure broker takes the username as the client id: two workers under one user
    # would take each other's session over, again and again.
    secure = tmp_path / "stack" / "secure"
    log = tmp_path / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANPULSE_")}
    env.update(URBANPULSE_SERVICE__WORKERS="2",
               URBANPULSE_SPOOL__PATH=str(tmp_path / "spool"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse", "gateway", "run", "--config",
             str(secure / "urbanpulse.toml")], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        def both() -> bool:
            assert process.poll() is None, log.read_text()
            text = log.read_text()
            return all(f"as urbanpulse-gateway-w{i} " in text for i in (0, 1))

        wait_until(both, 60, "both workers connected")
        time.sleep(3)  # a takeover would show now: a worker disconnected, reconnecting
        text = log.read_text()
        assert "disconnected from broker" not in text and "refused" not in text, text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
