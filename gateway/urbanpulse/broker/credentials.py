"""Credentials and TLS for the gateway's broker connection, from ``[mqtt]`` settings."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from urbanpulse.config import MqttSettings


def apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
    """Username/password and TLS as configured. The broker's hostname is always verified:
    a gateway that would talk to any certificate would hand its password to anyone."""
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
