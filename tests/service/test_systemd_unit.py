"""The systemd unit: accepted by systemd's own checker, and saying what the gateway needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from urbanpulse.config import Settings

UNIT_NAME = "urbanpulse-gateway.service"
INSTALLED_EXEC = "/opt/urbanpulse/.venv/bin/urbanpulse"


def _unit(repo_root: Path) -> Path:
    return repo_root / "deploy" / "systemd" / UNIT_NAME


def _verify(unit: Path) -> list[str]:
    """systemd-analyze verify's complaints about this unit (other units it loads may warn
    about themselves on a given machine; those are not ours)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed: run `make setup` (Debian package systemd)")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).splitlines()
    return [line for line in output if unit.name in line or str(unit) in line]


def _installable_copy(repo_root: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's `urbanpulse`: verify checks that the
    program exists, and /opt/urbanpulse is where an installation puts it, not a checkout."""
    text = _unit(repo_root).read_text()
    assert INSTALLED_EXEC in text
    program = Path(sys.executable).parent / "urbanpulse"
    assert program.exists(), f"{program} missing: the venv is not installed (make setup)"
    copy = tmp_path / UNIT_NAME
    copy.write_text(text.replace(INSTALLED_EXEC, str(program)))
    return copy


def test_unit_passes_systemd_analyze_verify(repo_root: Path, tmp_path: Path) -> None:
    complaints = _verify(_installable_copy(repo_root, tmp_path))
    assert complaints == [], "systemd-analyze verify:\n" + "\n".join(complaints)


def test_verify_would_catch_a_misspelt_directive(repo_root: Path, tmp_path: Path) -> None:
    # The check above can fail: a typo in a directive is reported and caught by it.
    copy = _installable_copy(repo_root, tmp_path)
    copy.write_text(copy.read_text().replace("WatchdogSec=", "WatchdgSec="))
    complaints = _verify(copy)
    assert any("Unknown key 'WatchdgSec'" in line for line in complaints), complaints


def _service(repo_root: Path) -> dict[str, list[str]]:
    """"Section.Key" -> every value it is given, in order (systemd keeps repeated keys such
    as Environment= and LoadCredential=, so a dict of last values would hide some)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in _unit(repo_root).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def _seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_unit_is_a_notify_service_with_a_watchdog_and_a_sandbox(repo_root: Path) -> None:
    unit = _service(repo_root)

    def one(key: str) -> str:
        return unit[f"Service.{key}"][-1]

    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    # The watchdog must allow a whole InfluxDB write (timeout_s) and a ping period more.
    assert _seconds(one("WatchdogSec")) >= 2 * Settings().influx.timeout_s
    # The gateway's own stop takes at most ~10 s (8 s flush + 2 s); systemd waits longer.
    assert 10 < _seconds(one("TimeoutStopSec")) <= 30
    assert one("Restart") in ("on-failure", "always") and "2" in one("RestartPreventExitStatus")
    assert "StartLimitBurst" in " ".join(unit) and "StartLimitIntervalSec" in " ".join(unit)
    assert one("User") == "urbanpulse" and one("StateDirectory") == "urbanpulse"
    assert one("ConfigurationDirectory") == "urbanpulse"
    # The spool lives in the state directory, the only writable place under ProtectSystem.
    environment = " ".join(unit["Service.Environment"])
    assert "URBANPULSE_SPOOL__PATH=/var/lib/urbanpulse/spool" in environment
    # Secrets come as systemd credentials, read through the *_file settings.
    credentials = unit["Service.LoadCredential"]
    for name, key in (("mqtt-password", "MQTT"), ("influx-password", "INFLUX")):
        assert f"{name}:/etc/urbanpulse/secrets/{name}" in credentials
        assert f"URBANPULSE_{key}__PASSWORD_FILE=%d/{name}" in environment
    # Bounds, and no network but the host's own (broker, InfluxDB).
    assert one("IPAddressDeny") == "any" and one("IPAddressAllow") == "localhost"
    assert one("MemoryMax") and one("TasksMax")
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(key) == value, f"{key}={one(key)!r}"
    assert one("ExecStart").endswith("gateway run --config /etc/urbanpulse/urbanpulse.toml")
