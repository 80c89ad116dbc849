"""The gateway and the services played against as an attacker would, with real clients: every
attack must fail, visibly, and cost nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from support.fault_harness import GatewayProcess, write_gateway_config
from support.gateway_harness import gateway_settings, running_gateway
from support.ops_harness import device_ids, status_rows, telemetry, write_registry
from support.services import Services, free_ports, mosquitto_password_file, services_for
from support.waiting import wait_until
from urbanpulse.broker.policy import GATEWAY_USER, OPERATOR_USER, acl
from urbanpulse.config import InfluxSettings, MqttSettings
from urbanpulse.devtools import stack
from urbanpulse.devtools.pki import Pki, make_pki
from urbanpulse.influx.writer import V1Writer, WriteError

pytestmark = pytest.mark.services

# What the gateway may reach, at most, whatever a board sends (issue 13's bench bound).
RSS_BOUND_MB = 150


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def _publish_retained(services: Services, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{topic[5:20]}")
    client.connect(services.mqtt_host, services.mqtt_port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(60)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_50_mb_retained_status_does_not_bloat_the_gateway(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    """One board's credentials, a 50 MB retained status: the broker never hands it to the
    gateway's MQTT 5 session (Maximum Packet Size), so the gateway neither grows nor stops;
    the other board's status is stored as usual."""
    big, small = device_ids("air", "noise")
    registry = write_registry(tmp_path / "devices.csv",
                              [(big, "air", "north", 60.0), (small, "noise", "north", 60.0)])
    _publish_retained(influx, f"city/{big}/status",
                      b'{"state":"online","pad":"' + b"x" * (50 * 1024 * 1024) + b'"}')
    _publish_retained(influx, f"city/{small}/status", b'{"state":"online"}')
    config = write_gateway_config(tmp_path / "gw.toml", influx, registry, client_id, "city")
    gateway = GatewayProcess(config, client_id, tmp_path / "gateway.log")
    started = gateway.start()
    try:
        gateway.wait_ready(influx, started)
        wait_until(lambda: status_rows(influx, small), timeout_s=30,
                   what="the other board's status stored")
        assert gateway.running(), gateway.log()
        assert gateway.process is not None
        peak = _peak_rss_mb(gateway.process.pid)
        assert peak < RSS_BOUND_MB, f"gateway peaked at {peak:.0f} MB"
    finally:
        gateway.stop()
        _publish_retained(influx, f"city/{big}/status", b"")
    assert status_rows(influx, big) == []


# -- the secure broker: identities and the ACL (urbanpulse.broker.policy) -------------------
BOARD_A, BOARD_B = "air-attack-01", "air-attack-02"
PASSWORDS = {BOARD_A: "a-pass-Xk2", BOARD_B: "b-pass-Jq7", GATEWAY_USER: "gw-pass-Lm3",
             OPERATOR_USER: "op-pass-Rt5"}
# InfluxDB with authentication: an admin, the gateway's user (its database only) and Grafana's
# (read only).
INFLUX_ADMIN = ("influx-admin", "admin-pass-Qw8")
INFLUX_GATEWAY = ("urbanpulse-gateway", "influx-gw-Hb4")
INFLUX_GRAFANA = ("urbanpulse-grafana", "influx-ro-Vn6")


@dataclass
class SecureBroker:
    services: Services
    pki: Pki


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure-broker")
    pki = make_pki(root / "pki")
    password_file = mosquitto_password_file(root / "mosquitto.passwd", PASSWORDS)
    acl_file = root / "mosquitto.acl"
    acl_file.write_text(acl())
    mqtt_port, influx_port, rpc_port = free_ports(3)
    settings = stack.StackSettings(
        state_dir=root / "stack", mqtt_port=mqtt_port, influx_port=influx_port,
        influx_rpc_port=rpc_port, tls_ca_file=pki.ca_cert, tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key, mqtt_password_file=password_file, mqtt_acl_file=acl_file,
        influx_admin=INFLUX_ADMIN,
        influx_users=((*INFLUX_GATEWAY, "ALL"), (*INFLUX_GRAFANA, "READ")),
    )
    stack.up(settings)
    try:
        yield SecureBroker(services_for(settings), pki)
    finally:
        stack.down(settings)


class Client:
    """A real MQTT 5 client over TLS, recording what it receives and what the broker says."""

    def __init__(self, broker: SecureBroker, user: str | None, password: str | None = None,
                 client_id: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.pki.ca_cert))
        if user is not None:
            self.client.username_pw_set(user, PASSWORDS.get(user) if password is None
                                        else password)
        self.connack: list[ReasonCode] = []
        self.received: list[tuple[str, bytes]] = []
        self.granted: list[list[ReasonCode]] = []
        self.disconnected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.append(rc)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.granted.append(rcs)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        self.client.connect(broker.services.mqtt_host, broker.services.mqtt_port)
        self.client.loop_start()
        wait_until(lambda: self.connack, timeout_s=10, what=f"CONNACK for {user}")

    @property
    def accepted(self) -> bool:
        return not self.connack[0].is_failure

    def subscribe(self, topic: str) -> bool:
        before = len(self.granted)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.granted) > before, timeout_s=10, what=f"SUBACK {topic}")
        return not self.granted[-1][0].is_failure

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(secure_broker: SecureBroker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(user: str | None, password: str | None = None,
             client_id: str | None = None) -> Client:
        made.append(Client(secure_broker, user, password, client_id))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_only_known_users_with_their_password_get_in(clients: Callable[..., Client]) -> None:
    assert clients(BOARD_A).accepted
    assert not clients(None).accepted, "anonymous"
    assert not clients(BOARD_A, "guessed").accepted, "wrong password"
    assert not clients("nobody", "x").accepted, "unknown user"


def test_a_board_cannot_speak_for_another_or_read_what_is_not_its_own(
    clients: Callable[..., Client]
) -> None:
    gateway = clients(GATEWAY_USER)
    assert gateway.subscribe("city/+/telemetry") and gateway.subscribe("city/+/status")
    a = clients(BOARD_A)
    # Mosquitto grants the subscriptions, then checks read access on every message.
    a.subscribe("city/#")
    a.subscribe(f"city/{BOARD_B}/cmd")
    a.publish(f"city/{BOARD_B}/telemetry", b'{"forged":true}')
    a.publish(f"city/{BOARD_B}/status", b'{"state":"offline"}', retain=True)
    clients(BOARD_B).publish(f"city/{BOARD_B}/telemetry", b'{"b":true}')
    clients(OPERATOR_USER).publish(f"city/{BOARD_B}/cmd", b'{"op":"config","wifi":"secret"}')
    a.publish(f"city/{BOARD_A}/telemetry", b'{"own":true}')
    wait_until(lambda: (f"city/{BOARD_A}/telemetry", b'{"own":true}') in gateway.received,
               timeout_s=10, what="board A's own telemetry")
    wait_until(lambda: (f"city/{BOARD_B}/telemetry", b'{"b":true}') in gateway.received,
               timeout_s=10, what="board B's own telemetry")
    from_a_about_b = [m for m in gateway.received if BOARD_B in m[0] and m[1] != b'{"b":true}']
    assert from_a_about_b == [], "board A spoke for board B"
    assert a.received == [], "board A read what is not its own"


def test_only_an_operator_writes_commands_a_board_reads_its_own(
    clients: Callable[..., Client]
) -> None:
    a = clients(BOARD_A)
    assert a.subscribe(f"city/{BOARD_A}/cmd")
    a.publish(f"city/{BOARD_A}/cmd", b'{"id":"self","op":"reboot"}')
    clients(BOARD_B).publish(f"city/{BOARD_A}/cmd", b'{"id":"other","op":"reboot"}')
    clients(GATEWAY_USER).publish(f"city/{BOARD_A}/cmd", b'{"id":"gw","op":"reboot"}')
    clients(OPERATOR_USER).publish(f"city/{BOARD_A}/cmd", b'{"id":"op","op":"reboot"}')
    wait_until(lambda: a.received, timeout_s=10, what="the operator's command")
    time.sleep(0.5)  # anything else would have arrived by now, in publish order
    assert a.received == [(f"city/{BOARD_A}/cmd", b'{"id":"op","op":"reboot"}')]


def test_no_credential_takes_over_the_gateways_session(clients: Callable[..., Client]) -> None:
    """The broker names each client by its username: board A asking for the gateway's
    client id gets its own, and the gateway stays connected."""
    gateway = clients(GATEWAY_USER, client_id=GATEWAY_USER)
    intruder = clients(BOARD_A, client_id=GATEWAY_USER)
    assert intruder.accepted
    time.sleep(1)
    assert not gateway.disconnected.is_set(), "the gateway was kicked off"


def test_the_broker_refuses_a_huge_packet(clients: Callable[..., Client]) -> None:
    a = clients(BOARD_A)
    a.client.publish(f"city/{BOARD_A}/status", b"x" * (50 * 1024 * 1024), qos=1, retain=True)
    assert a.disconnected.wait(30), "the broker took a 50 MB packet"


def _influx(broker: SecureBroker, user: tuple[str, str] | None) -> V1Writer:
    return V1Writer(InfluxSettings(
        url=broker.services.influx_url, database=broker.services.database,
        username=user[0] if user else None, password=user[1] if user else None))


def _noise_count(broker: SecureBroker) -> int:
    series = _influx(broker, INFLUX_GRAFANA).query('SELECT count("laeq") FROM "noise"')
    return int(series[0]["values"][0][1]) if series else 0


def test_the_gateway_stores_through_the_acl_with_its_own_identity(
    secure_broker: SecureBroker, tmp_path: Path, clients: Callable[..., Client]
) -> None:
    """The policy lets the real gateway do its work: its subscriptions (a shared one too) are
    granted, and board A's reading is stored under A with the gateway's InfluxDB user."""
    before = _noise_count(secure_broker)
    registry = write_registry(tmp_path / "devices.csv", [(BOARD_A, "noise", "north", 60.0)])
    settings = gateway_settings(secure_broker.services, registry, GATEWAY_USER,
                                username=INFLUX_GATEWAY[0], password=INFLUX_GATEWAY[1],
                                create_database=False)
    settings.mqtt = MqttSettings(
        host=secure_broker.services.mqtt_host, port=secure_broker.services.mqtt_port,
        client_id=GATEWAY_USER, shared_group="gateways", tls=True,
        ca_file=secure_broker.pki.ca_cert, username=GATEWAY_USER,
        password=PASSWORDS[GATEWAY_USER],
    )
    with running_gateway(settings):
        clients(BOARD_A).publish(f"city/{BOARD_A}/telemetry", telemetry(0, laeq=55.0).encode())
        wait_until(lambda: _noise_count(secure_broker) == before + 1,
                   timeout_s=20, what="board A's reading stored")


@pytest.mark.parametrize(("who", "status"), [(None, 401), (("urbanpulse-gateway", "guess"), 401),
                                             (INFLUX_GRAFANA, 403)],
                         ids=["anonymous", "wrong-password", "grafana-read-only"])
def test_influxdb_takes_writes_only_from_the_gateways_user(
    secure_broker: SecureBroker, who: tuple[str, str] | None, status: int
) -> None:
    before = _noise_count(secure_broker)
    point = f"noise,device_id=forged,district=north,kind=noise laeq=99 {int(time.time() * 1000)}"
    with pytest.raises(WriteError) as refused:
        _influx(secure_broker, who).write([point])
    assert refused.value.status == status
    assert _noise_count(secure_broker) == before
    with pytest.raises(WriteError):
        _influx(secure_broker, who).query('DROP MEASUREMENT "noise"')
    assert _noise_count(secure_broker) == before
