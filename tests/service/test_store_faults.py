"""The gateway when InfluxDB fails: spool, replay, dead letters, full spool, duplicates.

Tests that stop InfluxDB use a private Mosquitto + InfluxDB (other tests share the session's).
Each gateway runs in-process with a spy on its telemetry handler (it calls the real handler):
the spy shows what the broker delivered, so "nothing was redelivered" proves the ack.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import urllib3

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    count_points,
    gateway_settings,
    rows,
    running_gateway,
)
from support.services import (
    Services,
    influx_drop_and_create,
    influx_write,
    stack_service,
    start_service,
    start_services,
    start_stopped_services,
    stop_service,
    stop_services,
)
from support.waiting import wait_until
from urbanpulse.config import BatchSettings, InfluxSettings, Settings, SpoolSettings
from urbanpulse.devtools import stack
from urbanpulse.devtools.stack import processes
from urbanpulse.influx.deadletter import DeadLetterFile
from urbanpulse.influx.writer import V1Writer
from urbanpulse.service.batcher import AckToken, Batcher
from urbanpulse.service.gateway import Gateway
from urbanpulse.service.spool import Spool
from urbanpulse.service.stats import Stats

NOISE = "city/noise-centre-01/telemetry"
AIR = "city/air-north-01/telemetry"


# -- services ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = start_services(tmp_path_factory.mktemp("store-faults"))
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture
def store(private: Services) -> Services:
    """The private services, both running, with an empty database."""
    stack.up(private.settings, timeout_s=60)
    influx_drop_and_create(private)
    return private


def stop_influx(services: Services) -> None:
    stop_service(services, stack.INFLUXDB)


def count_points_or_down(services: Services) -> int | None:
    try:
        return count_points(services, "noise", "laeq")
    except urllib3.exceptions.HTTPError:
        return None


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(REGISTRY_CSV)
    return path


# -- the gateway ---------------------------------------------------------------------------
@contextmanager
def gateway_with_spy(
    settings: Settings, stop_timeout_s: float = 8.0
) -> Iterator[tuple[Gateway, list[str]]]:
    """A running gateway and the list of telemetry topics its handler was given."""
    gateway = Gateway(settings)
    delivered: list[str] = []
    real = gateway.handler.handle

    def spy(topic: str, payload: bytes) -> list[str]:
        delivered.append(topic)
        return real(topic, payload)

    gateway.handler.handle = spy  # type: ignore[method-assign]
    gateway.start()
    runner = threading.Thread(target=gateway.run, daemon=True)
    runner.start()
    try:
        assert gateway.connected.wait(15), "gateway did not connect to the broker"
        yield gateway, delivered
    finally:
        gateway.request_stop()
        runner.join(5)
        gateway.stop(stop_timeout_s)


def laeq(seq: int, t: int, value: float, boot: int = 1) -> dict[str, Any]:
    return {"v": 1, "boot": boot, "seq": seq, "samples": [{"t": t, "laeq": value}]}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def spooled_lines(path: Path, tmp_path: Path, prefix: str) -> list[str]:
    """The spooled lines starting with prefix, read from a copy (reading pops records)."""
    copy = tmp_path / f"copy-of-{path.name}"
    shutil.copytree(path, copy)
    spool = Spool(copy)
    lines = []
    while (record := spool.peek()) is not None:
        lines += [line for line in record.lines if line.startswith(prefix)]
        spool.pop(record)
    spool.close()
    shutil.rmtree(copy)
    return lines


# -- tests ---------------------------------------------------------------------------------
def test_influxdb_down_messages_are_spooled_acked_and_stored_once_after_restart(
    store: Services, registry: Path, tmp_path: Path, client_id: str
) -> None:
    t = now_ms() - 60_000
    first = gateway_settings(store, registry, client_id)
    spool_dir = first.spool.path
    publisher = Publisher(store, f"{client_id}-pub")
    try:
        stop_influx(store)
        with gateway_with_spy(first) as (gateway, delivered):
            for seq in range(30):
                publisher.publish(NOISE, laeq(seq, t + seq * 1000, 40.0 + seq))
            wait_until(lambda: len(delivered) == 30, what="30 messages received")
            wait_until(
                lambda: gateway.batcher.spool_status()["spool_points"] >= 30,
                what="the messages spooled",
            )
            stopping = time.monotonic()
        # SIGTERM-like stop with InfluxDB down: pending points spooled, not waited for.
        assert time.monotonic() - stopping < 10
        assert gateway.stats.snapshot()["spooled_points"] >= 30
        noise = spooled_lines(spool_dir, tmp_path, "noise,")
        assert len(noise) == 30, "each message spooled exactly once"

        start_stopped_services(store)
        # Same session, another spool: the broker has nothing to redeliver (all acked).
        second = gateway_settings(store, registry, client_id)
        second.spool = SpoolSettings(path=tmp_path / "other-spool")
        with gateway_with_spy(second) as (_, delivered):
            publisher.publish(AIR, {"v": 1, "boot": 1, "seq": 0,
                                    "samples": [{"t": t, "pm25": 5.0}]})
            wait_until(lambda: count_points(store, "air_quality", "pm25") == 1, what="marker")
            assert delivered == [AIR]
        assert count_points(store, "noise", "laeq") == 0

        # The first spool, opened by a gateway (another client id), is replayed.
        third = gateway_settings(store, registry, f"{client_id}-replay")
        third.spool = SpoolSettings(path=spool_dir)
        with gateway_with_spy(third) as (gateway, delivered):
            wait_until(lambda: count_points(store, "noise", "laeq") == 30, what="replay")
            wait_until(lambda: gateway.batcher.spool_status()["spool_points"] == 0, what="empty")
            assert delivered == []
            assert gateway.stats.snapshot()["replayed_points"] >= 30
    finally:
        publisher.close()
        start_stopped_services(store)
    stored = rows(store, "SELECT laeq FROM noise")
    assert [(r["time"], r["laeq"]) for r in stored] == [
        (t + seq * 1000, 40.0 + seq) for seq in range(30)
    ]
    assert list(spool_dir.glob("*.seg")) == []  # replayed segments are deleted


def test_new_batches_queue_behind_the_spool_and_are_stored_in_order_when_influx_returns(
    store: Services, registry: Path, client_id: str
) -> None:
    t = now_ms() - 60_000
    publisher = Publisher(store, f"{client_id}-pub")
    try:
        with gateway_with_spy(gateway_settings(store, registry, client_id)) as (gw, delivered):
            stop_influx(store)
            for seq in range(10):
                publisher.publish(NOISE, laeq(seq, t + seq * 1000, 40.0 + seq))
            wait_until(lambda: gw.stats.snapshot()["spooled_points"] >= 10, what="spooled")
            start_stopped_services(store)
            for seq in range(10, 20):
                publisher.publish(NOISE, laeq(seq, t + seq * 1000, 40.0 + seq))
            wait_until(lambda: count_points(store, "noise", "laeq") == 20, what="all stored",
                       timeout_s=60)
            wait_until(lambda: gw.batcher.spool_status()["spool_records"] == 0, what="drained")
            assert len(delivered) == 20
    finally:
        publisher.close()
        start_stopped_services(store)
    values = [r["laeq"] for r in rows(store, "SELECT laeq FROM noise")]
    assert values == [40.0 + seq for seq in range(20)]


def test_influxdb_that_hangs_times_out_into_the_spool_and_catches_up_when_it_wakes(
    store: Services, registry: Path, client_id: str
) -> None:
    t = now_ms() - 60_000
    settings = gateway_settings(store, registry, client_id, timeout_s=1.0)
    svc = stack_service(store.settings, stack.INFLUXDB)
    pid = processes.our_pid(svc)
    assert pid is not None
    publisher = Publisher(store, f"{client_id}-pub")
    try:
        with gateway_with_spy(settings) as (gateway, delivered):
            os.kill(pid, signal.SIGSTOP)  # accepts connections, never answers
            for seq in range(10):
                publisher.publish(NOISE, laeq(seq, t + seq * 1000, 40.0 + seq))
            wait_until(lambda: len(delivered) == 10, what="received")
            wait_until(lambda: gateway.stats.snapshot()["spooled_points"] >= 10,
                       what="spooled after the write timed out")
            os.kill(pid, signal.SIGCONT)
            wait_until(lambda: count_points(store, "noise", "laeq") == 10, what="caught up",
                       timeout_s=60)
            wait_until(lambda: gateway.batcher.spool_status()["spool_points"] == 0, what="empty")
    finally:
        os.kill(pid, signal.SIGCONT)
        publisher.close()
    assert [r["laeq"] for r in rows(store, "SELECT laeq FROM noise")] == [
        40.0 + seq for seq in range(10)
    ]


def test_point_refused_by_influxdb_goes_to_the_dead_letter_file_and_the_rest_is_stored(
    influx: Services, registry: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = now_ms() - 60_000
    # A real field type conflict: laeq already exists as a string in this shard.
    influx_write(influx, f'noise,device_id=someone-else laeq="loud" {t - 5000}')
    settings = gateway_settings(influx, registry, client_id)
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with caplog.at_level(logging.INFO), gateway_with_spy(settings) as (gateway, _):
            for seq in range(10):
                publisher.publish(AIR, {"v": 1, "boot": 1, "seq": seq,
                                        "samples": [{"t": t + seq * 1000, "pm25": 1.0 + seq}]})
                if seq == 4:
                    publisher.publish(NOISE, laeq(0, t + 500, 55.5))
            wait_until(lambda: count_points(influx, "air_quality", "pm25") == 10, what="air")
            wait_until(lambda: gateway.stats.snapshot()["dead_letter_points"] == 1,
                       what="the refused point set aside")
            dead_letter = settings.spool.dead_letter_file
            wait_until(dead_letter.exists, what="dead-letter file")
    finally:
        publisher.close()
    (entry,) = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert entry["status"] == 400
    assert "field type conflict" in entry["reason"]
    assert entry["point"].startswith("noise,device_id=noise-centre-01,")
    assert entry["point"].endswith(f" laeq=55.5 {t + 500}")
    assert entry["time"].endswith("Z")
    assert [r["pm25"] for r in rows(influx, "SELECT pm25 FROM air_quality")] == [
        1.0 + seq for seq in range(10)
    ]
    snap = gateway.stats.snapshot()
    assert snap["refused_points"] == 1
    assert "set aside in" in caplog.text and "field type conflict" in caplog.text
    # Not retried: the file holds it once and the gateway went on.
    assert snap["write_errors"] >= 1 and gateway.batcher.spool_status()["spool_points"] == 0


def test_many_refused_points_in_one_batch_cost_a_few_writes_not_two_per_point(
    influx: Services, tmp_path: Path
) -> None:
    t = now_ms() - 60_000
    influx_write(influx, f'noise,device_id=someone-else laeq="loud" {t - 5000}')
    noise = [f"noise,device_id=noise-centre-01 laeq={40.0 + i} {t + i}" for i in range(200)]
    air = [f"air_quality,device_id=air-north-01 pm25={1.0 + i} {t + i}" for i in range(200)]
    garbage = ["air_quality,device_id=air-north-01 pm25="]  # not line protocol at all
    mixed = [line for pair in zip(air, noise, strict=True) for line in pair]
    acked: list[AckToken] = []
    stats = Stats()
    writer = V1Writer(InfluxSettings(url=influx.influx_url, database=influx.database))
    dead_letter = DeadLetterFile(tmp_path / "dead.jsonl")
    batcher = Batcher(writer, acked.extend, stats, max_points=10_000, dead_letter=dead_letter)
    batcher.add(mixed[:200], (1, 1, 1))
    batcher.add(garbage, (1, 2, 1))
    batcher.add(mixed[200:], (1, 3, 1))
    batcher.start()
    try:
        wait_until(lambda: len(acked) == 3, what="all three acknowledged")
    finally:
        assert batcher.stop(10)
        writer.close()
    assert count_points(influx, "air_quality", "pm25") == 200
    assert count_points(influx, "noise", "laeq") == 1  # the string one only
    entries = [json.loads(line) for line in dead_letter.path.read_text().splitlines()]
    assert sorted(e["point"] for e in entries) == sorted(noise + garbage)
    assert all("field type conflict" in e["reason"] for e in entries if e["point"] in noise)
    snap = stats.snapshot()
    assert snap["dead_letter_points"] == 201 and snap["stored_points"] == 200
    # Halving alone would take ~800 writes for 200 scattered refused points.
    assert snap["writes"] < 40, snap


def test_full_spool_stops_acknowledging_and_nothing_is_lost_once_influxdb_returns(
    store: Services, registry: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = now_ms() - 60_000
    settings = gateway_settings(store, registry, client_id)
    # Room for a few batches only; batches of a few points each.
    settings.spool = SpoolSettings(
        path=settings.spool.path, max_bytes=4096, segment_bytes=1024, fsync="always"
    )
    settings.batch = BatchSettings(max_points=5, max_delay_s=0.2)
    publisher = Publisher(store, f"{client_id}-pub")
    try:
        stop_influx(store)
        with caplog.at_level(logging.INFO), gateway_with_spy(settings, stop_timeout_s=2) as (
            gateway,
            delivered,
        ):
            for seq in range(200):
                publisher.publish(NOISE, laeq(seq, t + seq * 100, float(seq % 120)))
            wait_until(lambda: len(delivered) == 200, what="200 messages received")
            wait_until(lambda: "SPOOL FULL" in caplog.text, what="the loud log line")
            status = gateway.batcher.spool_status()
            assert status["spool_disk_bytes"] <= 4096
            assert gateway.stats.snapshot()["spooled_points"] < 200
        full = [r for r in caplog.records if "SPOOL FULL" in r.getMessage()]
        assert full[0].levelno == logging.ERROR
        assert "points held unacknowledged" in full[0].getMessage()
        assert "spool holds" in full[0].getMessage()  # with its depth

        # InfluxDB back: the same session and spool. The broker redelivers what was never
        # acknowledged and the spool is replayed: every message stored, once.
        start_stopped_services(store)
        with gateway_with_spy(settings) as (gateway, delivered):
            wait_until(lambda: count_points(store, "noise", "laeq") == 200, what="all 200",
                       timeout_s=60)
            assert len(delivered) > 0, "nothing was held back from the broker"
    finally:
        publisher.close()
        start_stopped_services(store)
    times = [r["time"] for r in rows(store, "SELECT laeq FROM noise")]
    assert times == [t + seq * 100 for seq in range(200)]


def test_a_full_batcher_never_blocks_the_main_loop_so_a_stop_request_still_stops_it(
    store: Services, registry: Path, client_id: str
) -> None:
    """With the batcher full (InfluxDB down and the spool full), the main loop's own points
    (statistics, liveness, the device info of a reloaded registry) are skipped, not waited
    for: the loop goes on pinging the watchdog and sees SIGTERM's stop request."""
    gateway = Gateway(gateway_settings(store, registry, client_id))
    try:
        # Never started: nothing drains the batcher, as when nothing can be stored.
        gateway.batcher.add([f"noise,device_id=x laeq=1 {i}" for i in range(100_000)])
        with registry.open("a") as f:
            f.write("noise-west-01,noise,west,,,,60\n")
        runner = threading.Thread(target=gateway.run, daemon=True)
        runner.start()
        wait_until(lambda: "noise-west-01" in gateway.registry_watcher.registry,
                   what="the registry reloaded")
        gateway.request_stop()
        runner.join(10)
        assert not runner.is_alive(), "the main loop is blocked on the full batcher"
    finally:
        gateway.stop(2)


def test_real_redelivery_after_a_broker_restart_is_a_duplicate_acked_after_the_original(
    store: Services, registry: Path, client_id: str
) -> None:
    """Messages held unacknowledged (InfluxDB down, spool full) come again, with the DUP
    flag, when the broker restarts: recognised, not stored twice, and acknowledged on the new
    connection once the originals' points are stored."""
    t = now_ms() - 60_000
    settings = gateway_settings(store, registry, client_id)
    settings.spool = SpoolSettings(path=settings.spool.path, max_bytes=4096, segment_bytes=1024)
    settings.batch = BatchSettings(max_points=5, max_delay_s=0.2)
    publisher = Publisher(store, f"{client_id}-pub")
    try:
        stop_influx(store)
        with gateway_with_spy(settings) as (gateway, delivered):
            for seq in range(50):
                publisher.publish(NOISE, laeq(seq, t + seq * 100, 40.0))
            wait_until(lambda: len(delivered) == 50, what="received")
            # Full: a batch the spool cannot take is held (how the 50 points split into
            # batches depends on timing; that one does not fit is certain, 50 x 100 bytes).
            wait_until(lambda: gateway.batcher.held_points > 0, what="spool full")
            publisher.close()
            stop_service(store, stack.MOSQUITTO)
            # Mosquitto alone back (`stack.up` would start InfluxDB too).
            start_service(store, stack.MOSQUITTO)
            wait_until(lambda: gateway.stats.snapshot()["duplicates"] > 0, timeout_s=60,
                       what="the held messages redelivered and recognised")
            assert count_points_or_down(store) is None, "InfluxDB came back too early"
            start_stopped_services(store)
            wait_until(lambda: count_points(store, "noise", "laeq") == 50, timeout_s=60,
                       what="all stored")
            wait_until(lambda: gateway.batcher.pending_points == 0, what="nothing pending")
            duplicates = gateway.stats.snapshot()["duplicates"]
            assert len(delivered) == 50 + duplicates
        publisher = Publisher(store, f"{client_id}-pub2")
        with gateway_with_spy(gateway_settings(store, registry, client_id)) as (_, delivered):
            publisher.publish(AIR, {"v": 1, "boot": 1, "seq": 0,
                                    "samples": [{"t": t, "pm25": 5.0}]})
            wait_until(lambda: count_points(store, "air_quality", "pm25") == 1, what="marker")
            assert delivered == [AIR], "a held message was never acknowledged"
    finally:
        publisher.close()
        start_stopped_services(store)


def test_redelivered_message_counted_as_duplicate_stored_once_and_acked(
    influx: Services, registry: Path, client_id: str
) -> None:
    t = now_ms() - 60_000
    message = laeq(17, t, 61.0, boot=4)
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with gateway_with_spy(gateway_settings(influx, registry, client_id)) as (gw, delivered):
            publisher.publish(NOISE, message)
            publisher.publish(NOISE, message)  # what a redelivery looks like to the gateway
            publisher.publish(NOISE, laeq(18, t + 1000, 62.0, boot=4))
            wait_until(lambda: count_points(influx, "noise", "laeq") == 2, what="stored")
            wait_until(lambda: gw.stats.snapshot()["duplicates"] == 1, what="the duplicate")
            assert delivered == [NOISE] * 3
        # Every message, the duplicate included, was acknowledged: nothing comes again.
        with gateway_with_spy(gateway_settings(influx, registry, client_id)) as (_, delivered):
            publisher.publish(AIR, {"v": 1, "boot": 1, "seq": 0,
                                    "samples": [{"t": t, "pm25": 5.0}]})
            wait_until(lambda: count_points(influx, "air_quality", "pm25") == 1, what="marker")
            assert delivered == [AIR]
    finally:
        publisher.close()
    assert [(r["time"], r["laeq"]) for r in rows(influx, "SELECT laeq FROM noise")] == [
        (t, 61.0),
        (t + 1000, 62.0),
    ]


def test_a_board_that_counts_from_an_old_boot_again_is_stored_not_taken_for_a_duplicate(
    influx: Services, registry: Path, client_id: str
) -> None:
    # Its flash was erased: boot 4, seq 17 again, but with new readings. They must be kept.
    t = now_ms() - 60_000
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(gateway_settings(influx, registry, client_id)) as gw:
            publisher.publish(NOISE, laeq(17, t, 61.0, boot=4))
            publisher.publish(NOISE, laeq(17, t + 5000, 58.0, boot=4))
            wait_until(lambda: count_points(influx, "noise", "laeq") == 2, what="both stored")
            assert gw.stats.snapshot()["duplicates"] == 0
    finally:
        publisher.close()
