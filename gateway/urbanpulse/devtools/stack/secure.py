"""`urbanpulse stack up --secure`: the local stack as a city runs it (README "Security").

A TLS-only broker with passwords, the policy's ACL and bounds, and InfluxDB with
authentication, an admin and the gateway's and Grafana's own users. Its CA, certificates and
passwords are made on first use in ``<state_dir>/secure/`` (keys and passwords 0600, created
so) and kept, with a gateway configuration that uses them::

    <state_dir>/secure/
      ca.crt  server.crt  server.key  mosquitto.passwd  mosquitto.acl
      urbanpulse.toml (the gateway's)  operator.toml (an operator's: `cmd send`, `board check`)
      command.pub  receipt.pub
      secrets/  mqtt-urbanpulse-gateway  mqtt-urbanpulse-operator  influx-admin
                influx-urbanpulse-gateway  influx-urbanpulse-grafana
                command.key  receipt.key  device-keys.json (made by the first provision)

Boards are added by `urbanpulse provision --config <state_dir>/secure/urbanpulse.toml
--passwd-file <state_dir>/secure/mosquitto.passwd`: TLS with the stack's CA, the command key,
the device key in the key store. (Here the command key's private half sits beside the
stack's other secrets; a city keeps it with its operators only.)
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urbanpulse.broker.passwords import PasswordFileError, passwd_users, with_user
from urbanpulse.broker.policy import GATEWAY_USER, OPERATOR_USER, acl
from urbanpulse.config import MAX_WORKERS, worker_name
from urbanpulse.contract.signing import public_hex, write_private
from urbanpulse.devtools.pki import make_server_pki

from .services import StackError, StackSettings, state_root

SECURE_DIR = "secure"
INFLUX_ADMIN = "admin"
GRAFANA_USER = "urbanpulse-grafana"


def secure_dir(settings: StackSettings) -> Path:
    return state_root(settings) / SECURE_DIR


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def secret(path: Path) -> str:
    """The password kept in ``path``, made (random, 0600 from the start) when missing."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def secure_settings(base: StackSettings, prefix: str = "city") -> StackSettings:
    """``base`` in the secure mode, with its files made where missing."""
    root = _private_dir(secure_dir(base))
    keys = _private_dir(root / "secrets")
    ca, cert, key = root / "ca.crt", root / "server.crt", root / "server.key"
    if not (ca.exists() and cert.exists() and key.exists()):
        make_server_pki(root)
    password_file = root / "mosquitto.passwd"
    if not password_file.exists():
        os.close(os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        for user in (GATEWAY_USER, OPERATOR_USER):
            password = secret(keys / f"mqtt-{user}")
            # The gateway's workers ([service] workers) log in as users of their own.
            users = [user, *(worker_name(user, i) for i in range(MAX_WORKERS))] \
                if user == GATEWAY_USER else [user]
            for name in users:
                if name not in passwd_users(password_file):
                    with_user(password_file, name, password, root).replace(password_file)
    except PasswordFileError as exc:
        raise StackError(str(exc)) from None
    for name in ("command", "receipt"):
        if not (keys / f"{name}.key").exists():
            pair = Ed25519PrivateKey.generate()
            write_private(keys / f"{name}.key", pair)
            (root / f"{name}.pub").write_text(public_hex(pair) + "\n", encoding="ascii")
    acl_file = root / "mosquitto.acl"
    acl_file.write_text(acl(prefix), encoding="utf-8")
    return dataclasses.replace(
        base,
        tls_ca_file=ca,
        tls_cert_file=cert,
        tls_key_file=key,
        mqtt_password_file=password_file,
        mqtt_acl_file=acl_file,
        influx_admin=(INFLUX_ADMIN, secret(keys / "influx-admin")),
        influx_users=(
            (GATEWAY_USER, secret(keys / f"influx-{GATEWAY_USER}"), "ALL"),
            (GRAFANA_USER, secret(keys / f"influx-{GRAFANA_USER}"), "READ"),
        ),
    )


def _mqtt(settings: StackSettings, user: str) -> dict[str, Any]:
    root = secure_dir(settings)
    return {"host": settings.host, "port": settings.mqtt_port, "tls": True,
            "ca_file": str(root / "ca.crt"), "username": user,
            "password_file": str(root / "secrets" / f"mqtt-{user}")}


def write_gateway_config(settings: StackSettings) -> Path:
    """``urbanpulse.toml`` for a gateway on this secure stack: its own users, TLS with the
    stack's CA, passwords from the files above; the registry and the keys beside it. And
    ``operator.toml``: the operator's broker user, the same registry."""
    root = secure_dir(settings)
    keys = root / "secrets"
    registry = root / "devices.csv"
    (root / "operator.toml").write_text(
        "# Written by `urbanpulse stack up --secure`: an operator's tools (`urbanpulse cmd "
        "send`, `board check`).\n"
        + tomli_w.dumps({"mqtt": _mqtt(settings, OPERATOR_USER),
                         "registry": {"path": str(registry)}}), encoding="utf-8")
    config = {
        "mqtt": {**_mqtt(settings, GATEWAY_USER), "client_id": GATEWAY_USER},
        "influx": {
            "url": f"http://{settings.host}:{settings.influx_port}",
            "database": settings.database, "username": GATEWAY_USER,
            "password_file": str(keys / f"influx-{GATEWAY_USER}"), "create_database": False,
        },
        "registry": {"path": "devices.csv"},
        "keys": {"device_keys": str(keys / "device-keys.json"),
                 "command_public": str(root / "command.pub"),
                 "receipt_key": str(keys / "receipt.key")},
    }
    path = root / "urbanpulse.toml"
    path.write_text("# Written by `urbanpulse stack up --secure`; see README.md for every key.\n"
                    + tomli_w.dumps(config), encoding="utf-8")
    if not registry.exists():
        registry.write_text("device_id,kind,district,site,lat,lon,interval_s\n", encoding="utf-8")
    return path
