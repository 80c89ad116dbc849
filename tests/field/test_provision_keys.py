"""Keys at provisioning (CONTRACT.md v2): `urbanpulse keys new` makes the city's key pairs,
and every board provisioned gets a new device key, in its config.json and in the gateway's key
store only, and the command public key, so that it carries out only signed commands."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from urbanpulse.registry.keystore import load_keys


def urbanpulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env)


def provision(tmp_path: Path, device_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return urbanpulse(
        "provision", device_id, "--kind", "streetlight", "--district", "north", "--simulated",
        "--wifi-ssid", "city-iot", "--mqtt-host", "10.0.0.5", "--no-auth",
        "--registry", str(tmp_path / "devices.csv"), "--out-dir", str(tmp_path / "boards"),
        *extra)


def test_keys_new_makes_private_key_files_and_never_overwrites_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = urbanpulse("keys", "new", "--out-dir", str(keys))
    assert made.returncode == 0, made.stderr
    for name in ("command", "receipt"):
        assert stat.S_IMODE((keys / f"{name}.key").stat().st_mode) == 0o600
        assert (keys / f"{name}.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
        public = (keys / f"{name}.pub").read_text().strip()
        assert len(public) == 64 and public in made.stdout
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    before = (keys / "command.key").read_bytes()
    again = urbanpulse("keys", "new", "--out-dir", str(keys), "--which", "command")
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (keys / "command.key").read_bytes() == before


def test_each_board_gets_its_own_device_key_in_its_config_and_the_key_store(
        tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert urbanpulse("keys", "new", "--out-dir", str(keys), "--which", "command").returncode == 0
    command_pub = (keys / "command.pub").read_text().strip()
    store = tmp_path / "gateway" / "device-keys.json"
    common = ("--key-store", str(store), "--command-key", str(keys / "command.pub"))
    first = provision(tmp_path, "lamp-n-01", *common)
    assert first.returncode == 0, first.stderr
    assert "commands  signed only" in first.stdout
    assert "warning: no command key" not in first.stderr
    assert "warning: no key store" not in first.stderr
    second = provision(tmp_path, "lamp-n-02", *common)
    assert second.returncode == 0, second.stderr

    configs = {d: json.loads((tmp_path / "boards" / d / "config.json").read_text())
               for d in ("lamp-n-01", "lamp-n-02")}
    assert {c["cmd_key"] for c in configs.values()} == {command_pub}
    stored = load_keys(store)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert {d: k.hex() for d, k in stored.items()} == {
        d: c["device_key"] for d, c in configs.items()}
    assert configs["lamp-n-01"]["device_key"] != configs["lamp-n-02"]["device_key"]
    # Never shown: not on the label, not in the registry.
    for d, c in configs.items():
        assert c["device_key"] not in first.stdout + first.stderr + second.stdout + second.stderr
        assert c["device_key"] not in (tmp_path / "devices.csv").read_text(), d

    # Provisioned again: a new key replaces the old one in both places.
    again = provision(tmp_path, "lamp-n-01", *common, "--force")
    assert again.returncode == 0, again.stderr
    renewed = json.loads((tmp_path / "boards" / "lamp-n-01" / "config.json").read_text())
    assert renewed["device_key"] != configs["lamp-n-01"]["device_key"]
    assert load_keys(store)["lamp-n-01"].hex() == renewed["device_key"]


def test_a_key_store_others_can_read_stops_provisioning_and_changes_nothing(
        tmp_path: Path) -> None:
    store = tmp_path / "device-keys.json"
    assert provision(tmp_path, "lamp-n-01", "--key-store", str(store)).returncode == 0
    os.chmod(store, 0o644)
    before = store.read_bytes()
    refused = provision(tmp_path, "lamp-n-02", "--key-store", str(store))
    assert refused.returncode == 2
    assert "owner only" in refused.stderr and "chmod 600" in refused.stderr
    assert store.read_bytes() == before
    assert not (tmp_path / "boards" / "lamp-n-02").exists()
    assert "lamp-n-02" not in (tmp_path / "devices.csv").read_text()


def test_a_board_without_keys_is_provisioned_with_warnings(tmp_path: Path) -> None:
    """No command key: it takes unsigned commands. No key store: no device key either (the
    gateway could not check its seal), so it sends unsealed telemetry."""
    result = provision(tmp_path, "lamp-n-03")
    assert result.returncode == 0, result.stderr
    assert "commands  UNSIGNED accepted" in result.stdout
    assert "carries out unsigned commands" in result.stderr
    assert "sends unsealed (version 1) telemetry" in result.stderr
    config = json.loads((tmp_path / "boards" / "lamp-n-03" / "config.json").read_text())
    assert "cmd_key" not in config and "device_key" not in config
