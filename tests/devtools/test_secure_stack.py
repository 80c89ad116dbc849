"""`urbanpulse stack up --secure` as an operator uses it: the stack makes its CA, passwords and
gateway configuration; the gateway runs from that configuration; a board provisioned into
the stack's password file connects over TLS with the credentials of its config.json, and its
reading is stored. Real processes, real TLS."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.gateway_harness import running_gateway
from support.hostboards import Board
from support.services import free_ports
from support.waiting import wait_until
from urbanpulse.config import InfluxSettings, load_settings
from urbanpulse.contract.signing import write_private
from urbanpulse.devtools.fleet import TLS_HEAP, board_heap
from urbanpulse.devtools.pki import make_pki
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
    # Mosquitto reads its password file at start: restart the broker as the operator would.
    assert urbanpulse("stack", "down", *secure_stack).returncode == 0
    assert urbanpulse("stack", "up", "--secure", *secure_stack).returncode == 0
    settings = load_settings(secure / "urbanpulse.toml")
    board = Board(tmp_path / "boards" / "noise-sec-01", config)
    board.heap = board_heap(config)
    assert board.heap == TLS_HEAP

    with running_gateway(settings):
        board.start(write_config=False)
        try:
            grafana = V1Writer(InfluxSettings(
                url=settings.influx.url, database=settings.influx.database,
                username="urbanpulse-grafana",
                password=(secure / "secrets" / "influx-urbanpulse-grafana").read_text().strip()))
            wait_until(lambda: grafana.query('SELECT laeq FROM "noise"'), timeout_s=30,
                       what="the board's readings stored, over TLS")
            operator = ["--config", str(secure / "operator.toml"), "--wait", "20"]
            sent = urbanpulse("cmd", "send", "noise-sec-01", "identify", "seconds=1",
                              "--key-file", str(secure / "secrets" / "command.key"), *operator)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert sent.stdout.split() == ["noise-sec-01", "ok"]
            # The operator's broker user, another key: the board refuses it.
            write_private(tmp_path / "stolen.key", Ed25519PrivateKey.generate())
            forged = urbanpulse("cmd", "send", "noise-sec-01", "reboot",
                                "--key-file", str(tmp_path / "stolen.key"), *operator)
            assert forged.returncode == 1
            assert forged.stdout.split() == ["noise-sec-01", "refused:", "bad_signature"]
            # The gateway's own configuration is not an operator's.
            taken = urbanpulse("cmd", "send", "noise-sec-01", "flush", "--config",
                               str(secure / "urbanpulse.toml"), "--key-file",
                               str(secure / "secrets" / "command.key"))
            assert taken.returncode == 2 and "gateway's own broker identity" in taken.stderr
        finally:
            board.kill()
    console = board.console()
    assert "mqtt connected to 127.0.0.1" in console
    assert "identify: blinking the status LED for 1 s" in console
    assert "refused: bad_signature" in console
    assert "Traceback" not in console


def test_a_board_trusts_only_the_citys_ca_and_the_brokers_name(
    secure_stack: list[str], tmp_path: Path
) -> None:
    """A broker with a certificate of another CA, or of another name, gets nothing from the
    board: not its password, not a reading."""
    secure = tmp_path / "stack" / "secure"
    pki = make_pki(tmp_path / "other-pki")
    stranger = provision(secure, tmp_path, "noise-sec-02", "--mqtt-ca", str(pki.ca_cert))
    misnamed = provision(secure, tmp_path, "noise-sec-03", "--mqtt-tls-hostname",
                         "broker.elsewhere.example")
    boards = [Board(tmp_path / "boards" / c["device_id"], c) for c in (stranger, misnamed)]
    for board in boards:
        board.heap = board_heap(board.config)
        board.start(write_config=False)
    try:
        wait_until(lambda: all(b.console().count(" failed: ") >= 2 for b in boards), 30,
                   "connect attempts refused by the boards' TLS")
    finally:
        for board in boards:
            board.kill()
    for board, why in zip(boards, ("not correctly signed by the trusted CA",
                                   "Common Name (CN) does not match"), strict=True):
        console = board.console()
        assert "mqtt connected" not in console, console
        assert f"failed: tls: The certificate is {why}" in console or why in console, console
        assert "Traceback" not in console, console
