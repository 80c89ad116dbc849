"""TLS and authentication, against a real Mosquitto TLS listener and an InfluxDB with auth on.

The module starts its own stack: a Mosquitto whose TLS listener requires a client certificate
signed by the test CA *and* a username/password from a password file, and an InfluxDB with
authentication enabled. The gateway connects with the settings an operator would write, and
its secrets must never appear in what it logs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    running_gateway,
)
from support.services import (
    NOT_INSTALLED,
    Services,
    free_ports,
    mosquitto_password_file,
    services_for,
)
from support.waiting import wait_until
from urbanpulse.config import (
    ConfigError,
    InfluxSettings,
    KpiSettings,
    LogSettings,
    MetricsSettings,
    MqttSettings,
    RegistrySettings,
    Settings,
    SpoolSettings,
    StatsSettings,
    load_settings,
)
from urbanpulse.devtools import stack
from urbanpulse.devtools.pki import Pki, make_pki
from urbanpulse.influx.writer import V1Writer, WriteError
from urbanpulse.service.gateway import Gateway

pytestmark = pytest.mark.services

MQTT_USER, MQTT_PASSWORD = "gateway", "mqtt-s3cret-Xq9"
ADMIN_USER, ADMIN_PASSWORD = "admin", "influx-admin-Zk4"
WRITER_USER, WRITER_PASSWORD = "gw-writer", "influx-writer-Pw7"
SECRETS = (MQTT_PASSWORD, ADMIN_PASSWORD, WRITER_PASSWORD)


class SecureStack:
    def __init__(self, services: Services, tls_port: int, pki: Pki, root: Path) -> None:
        self.services = services
        self.tls_port = tls_port
        self.pki = pki
        self.root = root


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    root = tmp_path_factory.mktemp("secure")
    pki = make_pki(root / "pki")
    password_file = mosquitto_password_file(root / "mosquitto.passwd",
                                            {MQTT_USER: MQTT_PASSWORD})
    mqtt_port, tls_port, influx_port, rpc_port = free_ports(4)
    settings = stack.StackSettings(
        state_dir=root / "stack",
        mqtt_port=mqtt_port,
        influx_port=influx_port,
        influx_rpc_port=rpc_port,
        mqtt_tls_port=tls_port,
        tls_ca_file=pki.ca_cert,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        mqtt_password_file=password_file,
        mqtt_require_certificate=True,
        influx_admin=(ADMIN_USER, ADMIN_PASSWORD),
    )
    try:
        stack.up(settings)
    except stack.NotInstalledError as exc:
        pytest.fail(f"{NOT_INSTALLED}\n({exc})", pytrace=False)
    services = services_for(settings)
    try:
        # Least privilege: the gateway's own InfluxDB user may write and read its database.
        admin = V1Writer(
            InfluxSettings(
                url=services.influx_url, username=ADMIN_USER, password=ADMIN_PASSWORD
            )
        )
        admin.query(f"CREATE USER \"{WRITER_USER}\" WITH PASSWORD '{WRITER_PASSWORD}'")
        admin.query(f'GRANT ALL ON "{services.database}" TO "{WRITER_USER}"')
        admin.close()
        yield SecureStack(services, tls_port, pki, root)
    finally:
        stack.down(settings)


def _settings(secure: SecureStack, tmp_path: Path, client_id: str, **mqtt: Any) -> Settings:
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV)
    secret = tmp_path / "influx.password"
    secret.write_text(WRITER_PASSWORD + "\n")
    mqtt_settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": secure.tls_port,
        "client_id": client_id,
        "tls": True,
        "ca_file": secure.pki.ca_cert,
        "cert_file": secure.pki.client_cert,
        "key_file": secure.pki.client_key,
        "username": MQTT_USER,
        "password": MQTT_PASSWORD,
    }
    mqtt_settings.update(mqtt)
    return Settings(
        mqtt=MqttSettings(**mqtt_settings),
        influx=InfluxSettings(
            url=secure.services.influx_url,
            database=secure.services.database,
            username=WRITER_USER,
            password_file=secret,
            create_database=False,
        ),
        registry=RegistrySettings(path=registry, reload_interval_s=0.2),
        log=LogSettings(rejection_interval_s=0),
        stats=StatsSettings(interval_s=0.5),
        spool=SpoolSettings(path=tmp_path / f"spool-{client_id}"),
        metrics=MetricsSettings(port=0),
        kpi=KpiSettings(enabled=False),
    )


def _admin_count(secure: SecureStack, measurement: str, field: str) -> int:
    admin = V1Writer(
        InfluxSettings(
            url=secure.services.influx_url,
            database=secure.services.database,
            username=ADMIN_USER,
            password=ADMIN_PASSWORD,
        )
    )
    try:
        series = admin.query(f'SELECT count("{field}") FROM "{measurement}"')
    finally:
        admin.close()
    return int(series[0]["values"][0][1]) if series else 0


def _sample(value: float, seq: int) -> dict[str, Any]:
    # Distinct timestamps: two samples of one device in the same ms would be one point.
    return {"v": 1, "boot": 1, "seq": seq,
            "samples": [{"t": time.time_ns() // 1_000_000 - 1000 * seq, "laeq": value}]}


def test_gateway_stores_over_tls_with_client_certificate_and_passwords(
    secure: SecureStack, tmp_path: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = _admin_count(secure, "noise", "laeq")
    with caplog.at_level(logging.DEBUG), running_gateway(
        _settings(secure, tmp_path, client_id)
    ) as gateway:
        publisher = Publisher(secure.services, f"{client_id}-pub")  # the plain listener
        try:
            for seq in range(3):
                publisher.publish("city/noise-centre-01/telemetry", _sample(50.0 + seq, seq))
            wait_until(
                lambda: _admin_count(secure, "noise", "laeq") == before + 3,
                what="3 points stored",
            )
        finally:
            publisher.close()
    assert gateway.stats.snapshot()["accepted"] == 3
    logged = caplog.text
    for secret in SECRETS:
        assert secret not in logged


def test_broker_refuses_a_wrong_password_and_the_gateway_says_so_without_the_secret(
    secure: SecureStack, tmp_path: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(secure, tmp_path, client_id, password="not-the-password-Qr2")
    gateway = Gateway(settings)
    with caplog.at_level(logging.DEBUG):
        gateway.start()
        try:
            wait_until(
                lambda: "broker refused the connection" in caplog.text, what="refusal logged"
            )
            assert not gateway.connected.is_set()
        finally:
            gateway.stop(2)
    assert "Not authorized" in caplog.text or "Bad user name or password" in caplog.text
    assert "not-the-password-Qr2" not in caplog.text


def test_tls_listener_refuses_a_gateway_without_a_certificate_from_the_city_ca(
    secure: SecureStack, tmp_path: Path, client_id: str
) -> None:
    for mqtt in (
        {"cert_file": None, "key_file": None},  # no client certificate at all
        {"cert_file": secure.pki.stranger_cert, "key_file": secure.pki.stranger_key},
    ):
        gateway = Gateway(_settings(secure, tmp_path, client_id, **mqtt))
        gateway.start()
        try:
            assert not gateway.connected.wait(3), f"connected with {mqtt}"
        finally:
            gateway.stop(2)


def test_gateway_refuses_a_broker_certificate_it_cannot_verify(
    secure: SecureStack, tmp_path: Path, client_id: str
) -> None:
    # The stranger's certificate stands in for a CA the broker was not signed by.
    gateway = Gateway(_settings(secure, tmp_path, client_id, ca_file=secure.pki.stranger_cert))
    gateway.start()
    try:
        assert not gateway.connected.wait(3)
    finally:
        gateway.stop(2)


def test_influx_credentials_are_checked_and_a_refusal_is_retryable(secure: SecureStack) -> None:
    ok = V1Writer(
        InfluxSettings(
            url=secure.services.influx_url,
            database=secure.services.database,
            username=WRITER_USER,
            password=WRITER_PASSWORD,
        )
    )
    ok.write([f"probe,device_id=x value=1 {time.time_ns() // 1_000_000}"])
    ok.close()
    for auth in ({}, {"username": WRITER_USER, "password": "wrong-password-Lm3"}):
        writer = V1Writer(
            InfluxSettings(url=secure.services.influx_url, database=secure.services.database,
                           **auth)
        )
        with pytest.raises(WriteError) as refused:
            writer.write([f"probe,device_id=x value=2 {time.time_ns() // 1_000_000}"])
        writer.close()
        # Bad credentials are the operator's to fix; the points must wait, not be dropped.
        assert refused.value.status == 401
        assert refused.value.retryable
        assert "wrong-password-Lm3" not in str(refused.value)


def test_gateway_process_never_logs_its_secrets(
    secure: SecureStack, tmp_path: Path
) -> None:
    settings = _settings(secure, tmp_path, "secrets-gw")
    config = tmp_path / "urbanpulse.toml"
    mqtt_secret = tmp_path / "mqtt.password"
    mqtt_secret.write_text(MQTT_PASSWORD)
    pki = secure.pki
    config.write_text(
        f"""
[mqtt]
port = {secure.tls_port}
client_id = "secrets-gw"
tls = true
ca_file = "{pki.ca_cert}"
cert_file = "{pki.client_cert}"
key_file = "{pki.client_key}"
username = "{MQTT_USER}"
password_file = "{mqtt_secret}"
[influx]
url = "{secure.services.influx_url}"
username = "{WRITER_USER}"
create_database = false
[registry]
path = "{settings.registry.path}"
[spool]
path = "{tmp_path / "spool"}"
[metrics]
port = 0
[log]
level = "DEBUG"
"""
    )
    # The InfluxDB password comes from the environment, as a unit's Environment= would give it.
    env = dict(os.environ, URBANPULSE_INFLUX__PASSWORD=WRITER_PASSWORD)
    check = subprocess.run(
        [sys.executable, "-m", "urbanpulse", "config", "check", "--config", str(config)],
        capture_output=True, text=True, env=env,
    )
    assert check.returncode == 0, check.stderr
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse", "gateway", "run", "--config", str(config)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    publisher = Publisher(secure.services, "secrets-pub")
    try:
        wait_until(lambda: "connected to" in log_path.read_text(), what="gateway connected")
        before = _admin_count(secure, "noise", "laeq")
        publisher.publish("city/noise-centre-01/telemetry", _sample(61.0, 0))

        def stored() -> bool:
            return _admin_count(secure, "noise", "laeq") == before + 1

        wait_until(stored, what="point stored through the secured path")
    finally:
        publisher.close()
        process.terminate()
        process.wait(15)
    text = log_path.read_text() + check.stdout + check.stderr
    assert "gateway started" in text
    for secret in SECRETS:
        assert secret not in text


def test_tls_settings_are_checked_at_start(tmp_path: Path, secure: SecureStack) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[mqtt]\ntls = true\ncert_file = "/nowhere/gateway.crt"\n')
    with pytest.raises(ConfigError) as missing_key:
        load_settings(config)
    assert "cert_file and key_file go together" in str(missing_key.value)
    key = secure.pki.client_key
    config.write_text(
        f'[mqtt]\ntls = true\ncert_file = "/nowhere/gateway.crt"\nkey_file = "{key}"\n'
    )
    with pytest.raises(ConfigError) as unreadable:
        load_settings(config)
    assert "cert_file '/nowhere/gateway.crt' cannot be read" in str(unreadable.value)
    config.write_text(f'[mqtt]\nca_file = "{secure.pki.ca_cert}"\n')
    with pytest.raises(ConfigError) as no_tls:
        load_settings(config)
    assert "need tls = true" in str(no_tls.value)


def test_influxdb_admin_user_survives_a_stack_restart(secure: SecureStack) -> None:
    # `stack up` on an InfluxDB that already has its admin user must not fail on it.
    states = stack.up(secure.services.settings)
    assert all(s.running for s in states)
    response = urllib3.request(
        "GET", f"{secure.services.influx_url}/query", fields={"q": "SHOW DATABASES"}
    )
    assert response.status == 401  # auth really is on: no anonymous reads
