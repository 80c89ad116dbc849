"""Liveness against a real Mosquitto: retained status, last will, timeouts, heartbeats."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.gateway_harness import (
    Publisher,
    running_gateway,
)
from support.ops_harness import device_ids, ops_settings, status_rows, telemetry, write_registry
from support.services import Services
from support.waiting import wait_until

# A board as the firmware behaves: a retained last will saying offline, then a retained
# online status. Killed with SIGKILL, its TCP connection drops without DISCONNECT, so the
# broker publishes the will (a board losing power or WiFi).
BOARD = """
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
client.will_set(f"city/{device}/status", json.dumps({"state": "offline"}), qos=1, retain=True)
client.connect(host, port, keepalive=30)
client.loop_start()
status = json.dumps({"state": "online", "fw": "0.4.0", "boot": 7})
client.publish(f"city/{device}/status", status, qos=1, retain=True).wait_for_publish(10)
print("online", flush=True)
time.sleep(600)
"""


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "urbanpulse.liveness"]


def _wait_logged(caplog: pytest.LogCaptureFixture, line: str, count: int = 1) -> None:
    wait_until(lambda: _logged(caplog).count(line) >= count, 20, f"{line!r} x {count}")


def _changes(services: Services, device_id: str) -> list[tuple[bool, str, str]]:
    """The device's status points, consecutive repeats (heartbeats) folded."""
    folded: list[tuple[bool, str, str]] = []
    for row in status_rows(services, device_id):
        point = (row["online"], row["state"], row["reason"])
        if not folded or folded[-1] != point:
            folded.append(point)
    return folded


@pytest.mark.services
@pytest.mark.parametrize("shared_group", [None, "gateways"])
def test_retained_status_and_last_will_reach_every_gateway(
    influx: Services, tmp_path: Path, client_id: str, caplog: pytest.LogCaptureFixture,
    shared_group: str | None,
) -> None:
    early, board = device_ids("air", "park")
    registry = write_registry(tmp_path / "devices.csv",
                              [(early, "air", "north", 60), (board, "parking", "south", 60)])
    # With a shared group, two gateways share the telemetry; each must still see every
    # board's status and will (status is never subscribed through the share).
    gateways = 2 if shared_group else 1
    all_settings = [ops_settings(influx, registry, f"{client_id}-{n}") for n in range(gateways)]
    for settings in all_settings:
        settings.mqtt.shared_group = shared_group
    publisher = Publisher(influx, f"{client_id}-pub")
    # Online before the gateways start: they learn it from the retained message.
    publisher.client.publish(f"city/{early}/status", '{"state":"online","fw":"0.4.0","boot":3}',
                             qos=1, retain=True).wait_for_publish(10)
    process = None
    try:
        with caplog.at_level(logging.INFO, "urbanpulse.liveness"), ExitStack() as stack:
            for settings in all_settings:
                stack.enter_context(running_gateway(settings))
            _wait_logged(caplog, f"device={early} online (status)", count=gateways)
            process = subprocess.Popen(
                [sys.executable, "-c", BOARD, influx.mqtt_host, str(influx.mqtt_port), board],
                stdout=subprocess.PIPE, text=True,
            )
            assert process.stdout is not None and process.stdout.readline() == "online\n"
            _wait_logged(caplog, f"device={board} online (status)", count=gateways)
            process.kill()  # no DISCONNECT: the broker sends the will
            process.wait(10)
            _wait_logged(caplog, f"device={board} offline (will)", count=gateways)
            wait_until(lambda: len(status_rows(influx, board)) >= 2, what="status points")
            time.sleep(1.5)  # a second tick: a change must not be logged or written twice
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        for device in (early, board):  # clear the retained statuses
            publisher.client.publish(f"city/{device}/status", b"", qos=1, retain=True)
        publisher.close()

    logged = _logged(caplog)  # once per change and gateway
    assert logged.count(f"device={early} online (status)") == gateways
    assert logged.count(f"device={board} online (status)") == gateways
    assert logged.count(f"device={board} offline (will)") == gateways
    assert _changes(influx, board) == [(True, "online", "status"), (False, "offline", "will")]
    assert len(status_rows(influx, board)) <= 2 * gateways
    assert _changes(influx, early) == [(True, "online", "status")]


@pytest.mark.services
def test_silent_board_times_out_and_comes_back_with_telemetry(
    influx: Services, tmp_path: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    quiet, never = device_ids("noise", "soil")
    # interval_s 1 and factor 3: offline after 3 s unheard; heartbeat every second.
    registry = write_registry(tmp_path / "devices.csv",
                              [(quiet, "noise", "centre", 1), (never, "soil", "park", 1)])
    settings = ops_settings(influx, registry, client_id, timeout_factor=3, heartbeat_s=1)
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with caplog.at_level(logging.INFO, "urbanpulse.liveness"), running_gateway(settings):
            publisher.publish(f"city/{quiet}/telemetry", telemetry(0, laeq=50.0))
            _wait_logged(caplog, f"device={quiet} online (telemetry)")
            last_heard = time.monotonic()
            _wait_logged(caplog, f"device={quiet} offline (timeout 3 s)")
            assert time.monotonic() - last_heard >= 2.5, "timed out before 3 s of silence"
            # Never heard since the gateway started: offline after the same timeout.
            _wait_logged(caplog, f"device={never} offline (timeout 3 s)")
            publisher.publish(f"city/{quiet}/telemetry", telemetry(1, laeq=51.0))
            wait_until(lambda: _logged(caplog).count(f"device={quiet} online (telemetry)") == 2,
                       what="back online")
            # Heartbeats re-write the state without a new change.
            wait_until(lambda: len(status_rows(influx, never)) >= 3, what="heartbeats")
    finally:
        publisher.close()

    logged = _logged(caplog)
    assert logged.count(f"device={quiet} offline (timeout 3 s)") == 1
    assert logged.count(f"device={never} offline (timeout 3 s)") == 1
    assert _changes(influx, quiet) == [
        (True, "online", "telemetry"), (False, "offline", "timeout"), (True, "online", "telemetry")
    ]
    assert _changes(influx, never) == [(False, "offline", "timeout")]
    records = [r for r in caplog.records if r.name == "urbanpulse.liveness"]
    assert {r.levelno for r in records if "offline" in r.getMessage()} == {logging.WARNING}


def test_a_status_over_its_bound_is_refused_before_it_is_parsed() -> None:
    from urbanpulse.contract.messages import MessageRejected, Reason
    from urbanpulse.service.liveness import parse_status

    assert parse_status(b'{"state":"online","fw":"0.3.0","boot":7}') == "online"
    with pytest.raises(MessageRejected) as info:
        parse_status(b'{"state":"online","pad":"' + b"x" * 1024 + b'"}')
    assert info.value.rejection.reason is Reason.TOO_LARGE
