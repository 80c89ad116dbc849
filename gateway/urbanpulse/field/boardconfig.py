"""A board's ``config.json`` (format: firmware/urbanpulse_fw/config.py), for every caller.

Provisioning, the simulated fleet and the tests all build a board's configuration here, and
take each kind's sensors from the one table below.
"""

from __future__ import annotations

import copy
from typing import Any

# The standard wiring of each kind (firmware/README.md, "Sensors and wiring"), which is also
# the firmware's default for each entry. A board wired otherwise gets its own list.
_I2C0 = {"bus": 0, "scl": 22, "sda": 21}
_UART2 = {"bus": 2, "tx": 17, "rx": 16}
SENSORS: dict[str, list[dict[str, Any]]] = {
    "air": [
        {"type": "bme280", "i2c": _I2C0, "addr": 118},
        {"type": "pms5003", "uart": _UART2},
    ],
    "noise": [{"type": "noise", "adc": 35}],
    "traffic": [{"type": "pulse", "pin": 27}],
    "parking": [{"type": "bay", "i2c": _I2C0}],
    "streetlight": [
        {"type": "lamp", "relay": 26, "pzem": {"uart": {"bus": 1, "tx": 33, "rx": 25}, "addr": 1}},
    ],
    "water": [{"type": "water", "uart": _UART2, "pings": 5}],  # + mount_cm, per site
    "soil": [{"type": "soil", "adc": 34, "dry": 52000, "wet": 21000}],
}
# Fitted to some air boards only (CO2), on the same I2C bus.
CO2_SENSOR: dict[str, Any] = {"type": "scd41", "i2c": _I2C0}


class BoardConfigError(ValueError):
    """The board cannot be configured as asked; the message says what is missing."""


def standard_sensors(
    kind: str,
    *,
    mount_cm: float | None = None,
    location: tuple[float, float] | None = None,
    co2: bool = False,
) -> list[dict[str, Any]]:
    """The kind's sensors as wired by default. ``mount_cm``: a water gauge's height above the
    datum (required for water); ``location``: where a lamp switches from dusk to dawn;
    ``co2``: an air board with an SCD41."""
    sensors: list[dict[str, Any]] = copy.deepcopy(SENSORS[kind])
    if kind == "water":
        if mount_cm is None:
            raise BoardConfigError(
                "a water board needs --mount-cm (the sensor's height above the river-bed "
                "datum, in cm)"
            )
        sensors[0]["mount_cm"] = mount_cm
    if kind == "streetlight" and location is not None:
        sensors[0]["lat"], sensors[0]["lon"] = location
    if kind == "air" and co2:
        sensors.append(copy.deepcopy(CO2_SENSOR))
    return sensors


# What stays of an entry when the board relies on the firmware's default wiring.
_PER_SITE = ("type", "mount_cm", "lat", "lon")


def on_default_wiring(sensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same sensors with only their type and per-site settings: the firmware fills in
    the standard wiring, and the config.json is shorter (less heap while a board parses it)."""
    return [{key: entry[key] for key in _PER_SITE if key in entry} for entry in sensors]


def simulated_sensors(kind: str) -> list[dict[str, Any]]:
    return [{"type": "sim", "kind": kind}]


def sim_seed(device_id: str) -> int:
    """Simulated sensors' seed: each board its own day, the same on every run."""
    return sum(device_id.encode()) * 7919 % 100_000


def board_config(
    device_id: str,
    kind: str,
    *,
    mqtt_host: str,
    mqtt_port: int,
    sensors: list[dict[str, Any]],
    sample_interval_s: float,
    publish_interval_s: float,
    wifi_ssid: str,
    wifi_password: str | None,
    prefix: str = "city",
    username: str | None = None,
    password: str | None = None,
    seed: int | None = None,
    max_messages: int | None = None,
    cmd_key: str | None = None,
    device_key: str | None = None,
    ota_key: str | None = None,
    tls: dict[str, Any] | None = None,
    backup_hosts: list[str] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "device_id": device_id,
        "kind": kind,
        "wifi": {"ssid": wifi_ssid, "password": wifi_password},
        "mqtt": {
            "host": mqtt_host,
            "port": mqtt_port,
            "username": username,
            "password": password,
            "prefix": prefix,
            "keepalive_s": 30,
        },
        "sample_interval_s": sample_interval_s,
        "publish_interval_s": publish_interval_s,
        "max_samples_per_message": 50,
        "sensors": sensors,
    }
    if seed is not None:
        config["seed"] = seed
    if max_messages is not None:
        config["max_messages"] = max_messages
    # CONTRACT.md v2: the command public key (then only signed commands are carried out) and
    # the board's own secret.
    if tls is not None:
        config["mqtt"]["tls"] = tls
    if backup_hosts:
        config["mqtt"]["backup_hosts"] = list(backup_hosts)
    if cmd_key is not None:
        config["cmd_key"] = cmd_key
    if device_key is not None:
        config["device_key"] = device_key
    if ota_key is not None:  # the release public key: updates over the air it signed
        config["ota_key"] = ota_key
    return config
