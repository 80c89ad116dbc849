"""Shared fixtures: one private Mosquitto + InfluxDB for the session, a fresh database per test.

The services are started by the project's own `urbanpulse.devtools.stack` on free loopback
ports with their data in a temporary folder. If they are not installed the tests fail with how
to fix it (`make setup`); they are never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.paths import REPO
from support.services import (
    Services,
    clear_retained,
    influx_drop_and_create,
    start_services,
    stop_services,
)

# Host boards and their private broker, for every folder of tests that runs firmware.
pytest_plugins = ("support.hostboards",)

_ids = itertools.count()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = start_services(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture
def influx(services: Services) -> Services:
    """The services with an empty `urbanpulse` database and no retained messages."""
    influx_drop_and_create(services)
    clear_retained(services)
    return services


@pytest.fixture
def client_id() -> str:
    """A broker client id no other test uses (persistent sessions outlive a test)."""
    return f"test-gw-{next(_ids)}"


@pytest.fixture
def repo_root() -> Path:
    return REPO
