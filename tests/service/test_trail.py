"""The archive and the hourly receipts (CONTRACT.md v2) through a real gateway, Mosquitto and
InfluxDB: every accepted sealed payload archived once, byte for byte; receipts made from the
archive, signed, published retained and stored; a restart rebuilds the chains from the
archive."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.fault_harness import GatewayProcess, write_gateway_config
from support.gateway_harness import Publisher, gateway_settings, rows, running_gateway
from support.hostboards import retained
from support.services import Services
from support.waiting import wait_until
from urbanpulse.config import KeySettings, Settings
from urbanpulse.contract import merkle
from urbanpulse.contract.receipts import hour_text, parse_receipt
from urbanpulse.contract.sealed import digest, genesis, seal
from urbanpulse.contract.signing import public_hex, write_private
from urbanpulse.registry.keystore import render_keys
from urbanpulse.service.archive import CLOSED, OPEN, Archived, encode, records, segment_name
from urbanpulse.service.receipts import ReceiptMaker

pytestmark = pytest.mark.services

KEY = bytes(range(32))
HOUR = 3_600_000


class Board:
    def __init__(self, device_id: str, boot: int = 1) -> None:
        self.device_id = device_id
        self.boot = boot
        self.seq = 0
        self.prev = genesis(device_id)

    def message(self, t: int, value: float) -> bytes:
        body = (f'{{"v":2,"boot":{self.boot},"seq":{self.seq},"samples":[{{"t":{t},'
                f'"pm25":{value}}}],"prev":"{self.prev.hex()}"}}').encode()
        payload = seal(body, KEY)
        self.seq += 1
        self.prev = digest(payload)
        return payload


def _settings(services: Services, tmp_path: Path, client_id: str) -> tuple[Settings, str]:
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district\nair-tr-01,air,north\nair-tr-02,air,north\n"
                        "air-tr-03,air,south\n", encoding="utf-8")
    keys = tmp_path / "device-keys.json"
    keys.write_text(render_keys({d: KEY for d in ("air-tr-01", "air-tr-02", "air-tr-03")}))
    keys.chmod(0o600)
    receipt_key = Ed25519PrivateKey.generate()
    write_private(tmp_path / "receipt.key", receipt_key)
    settings = gateway_settings(services, registry, client_id)
    settings.keys = KeySettings(device_keys=keys, receipt_key=tmp_path / "receipt.key")
    return settings, public_hex(receipt_key)


def _archived(root: Path) -> list[Archived]:
    return [r for p in sorted(root.glob("*/*.*")) if p.suffix in (OPEN, CLOSED)
            for _, r in records(p)]


def _pm25(services: Services) -> int:
    return len(rows(services, "SELECT pm25 FROM air_quality"))


def test_payloads_are_archived_once_and_a_restart_keeps_the_chains(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    settings, _ = _settings(influx, tmp_path, client_id)
    root = settings.archive.path
    t0 = time.time_ns() // 1_000_000 - 60_000
    boards = [Board("air-tr-01"), Board("air-tr-02"), Board("air-tr-03")]
    sent: list[bytes] = []
    pub = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(settings):
            for i in range(5):
                for b in boards:
                    sent.append(b.message(t0 + 1000 * i, float(i)))
                    pub.publish(f"city/{b.device_id}/telemetry", sent[-1])
            pub.publish("city/air-tr-01/telemetry", sent[0])  # a redelivery
            wait_until(lambda: _pm25(influx) == 15, 20, "15 readings stored")
        assert [r.payload for r in _archived(root)] == sent
        with running_gateway(settings):
            # After the restart: the redelivery of an archived message is known, and the
            # boards' next messages link to their last one (no gap).
            pub.publish("city/air-tr-02/telemetry", sent[1])
            for b in boards:
                sent.append(b.message(t0 + 9000, 9.0))
                pub.publish(f"city/{b.device_id}/telemetry", sent[-1])
            wait_until(lambda: _pm25(influx) == 18, 20, "18 readings stored")
            wait_until(lambda: rows(influx, "SELECT sum(verified) AS v, sum(gaps) AS g FROM "
                                    "device_integrity")[0]["v"] == 18, 20, "the counts")
            assert rows(influx, "SELECT sum(gaps) AS g FROM device_integrity")[0]["g"] == 0
    finally:
        pub.close()
    archived = _archived(root)
    assert [r.payload for r in archived] == sent
    assert {r.district for r in archived if r.device_id == "air-tr-03"} == {"south"}


def _write_segment(folder: Path, hour: int, found: list[Archived], suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / (segment_name(hour) + suffix)).open("ab") as f:
        for r in found:
            f.write(encode(r))


def test_receipts_of_a_past_hour_are_made_from_the_archive_signed_and_published(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    settings, public = _settings(influx, tmp_path, client_id)
    root = settings.archive.path
    hour = (time.time_ns() // 1_000_000 // HOUR - 3) * HOUR
    boards = {d: Board(d) for d in ("air-tr-01", "air-tr-02", "air-tr-03")}
    district = {"air-tr-01": "north", "air-tr-02": "north", "air-tr-03": "south"}
    made: list[Archived] = []
    for i in range(4):
        for d in ("air-tr-02", "air-tr-03", "air-tr-01"):
            b = boards[d]
            made.append(Archived(hour + 1000 * i, d, district[d], b.boot, b.seq,
                                 b.message(hour + 1000 * i, float(i))))
    # Two writers: one closed its hour; another died with it open and a torn record at its
    # end (its lock is free): the receipt maker closes it, without the torn bytes.
    _write_segment(root / "worker-0", hour, made[:7], CLOSED)
    _write_segment(root / "worker-1", hour, made[7:], OPEN)
    with (root / "worker-1" / (segment_name(hour) + OPEN)).open("ab") as f:
        f.write(encode(made[0])[:-5])
    with running_gateway(settings):
        wait_until(lambda: len(rows(influx, "SELECT * FROM integrity_receipt")) == 2, 30,
                   "two receipts stored")
        got = {m.topic: m.payload for m in retained(influx.mqtt_port, "city/receipts/+")}
    docs = json.loads((root / "receipts" / f"{segment_name(hour)}.json").read_text())
    assert [d["district"] for d in docs] == ["north", "south"]
    for doc in docs:
        receipt = parse_receipt(doc, public)
        assert got[f"city/receipts/{receipt.district}"] == receipt.document()
        ordered = sorted((r for r in made if r.district == receipt.district),
                         key=lambda r: (r.device_id, r.seq))
        assert receipt.hour == hour_text(hour)
        assert receipt.leaves == len(ordered)
        assert receipt.root == merkle.root([merkle.leaf_hash(r.payload)
                                            for r in ordered]).hex()
    assert (root / "worker-1" / (segment_name(hour) + CLOSED)).exists()
    assert sorted(r.payload for r in _archived(root)) == sorted(r.payload for r in made)
    stored = rows(influx, "SELECT * FROM integrity_receipt")
    assert {r["district"]: r["leaves"] for r in stored} == {"north": 8, "south": 4}


def test_hours_past_the_retention_leave_the_archive_once_their_receipts_are_made(
        tmp_path: Path) -> None:
    root = tmp_path / "archive"
    now = time.time_ns() // 1_000_000
    old, recent = (now // HOUR - 24 * 10) * HOUR, (now // HOUR - 2) * HOUR
    board = Board("air-tr-01")
    for hour in (old, recent):
        _write_segment(root / "main", hour, [Archived(hour, "air-tr-01", "north", 1, board.seq,
                                                      board.message(hour, 1.0))], CLOSED)
    published: list[str] = []

    def publish(topic: str, _: bytes) -> bool:
        published.append(topic)
        return True

    maker = ReceiptMaker(root, Ed25519PrivateKey.generate(), "city", publish,
                         lambda lines: True, retention_days=7)
    maker.tick(now)
    assert (root / "receipts" / f"{segment_name(old)}.json").exists()
    assert (root / "receipts" / f"{segment_name(old)}.published").exists()
    assert not (root / "main" / (segment_name(old) + CLOSED)).exists()
    assert (root / "main" / (segment_name(recent) + CLOSED)).exists()
    assert published == ["city/receipts/north"] * 2
    # A size bound: the oldest receipted hours go until the archive fits.
    third = (now // HOUR - 1) * HOUR
    _write_segment(root / "main", third, [Archived(third, "air-tr-01", "north", 1, board.seq,
                                                   board.message(third, 2.0))], CLOSED)
    maker = ReceiptMaker(root, Ed25519PrivateKey.generate(), "city", publish,
                         lambda lines: True, max_bytes=1)
    maker.tick(now)
    assert not (root / "main" / (segment_name(recent) + CLOSED)).exists()
    assert not (root / "main" / (segment_name(third) + CLOSED)).exists()
    assert (root / "receipts" / f"{segment_name(third)}.json").exists()


def test_kill_9_while_archiving_loses_no_payload_and_the_receipts_match_the_archive(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    """A gateway process killed (SIGKILL) mid-stream, started again: every payload archived
    exactly once and every reading stored, the chains unbroken; an hour a dead writer left
    open gets its receipt, which matches what the archive holds."""
    settings, public = _settings(influx, tmp_path, client_id)
    root = tmp_path / "archive"
    past = (time.time_ns() // 1_000_000 // HOUR - 2) * HOUR
    old = Board("air-tr-03", boot=1)
    left = [Archived(past + i, "air-tr-03", "south", 1, i, old.message(past + i, 1.0))
            for i in range(3)]
    _write_segment(root / "main", past, left, OPEN)
    config = write_gateway_config(
        tmp_path / "gw.toml", influx, settings.registry.path, client_id, "city",
        extra={"keys": {"device_keys": str(settings.keys.device_keys),
                        "receipt_key": str(settings.keys.receipt_key)},
               "archive": {"path": str(root)}})
    gateway = GatewayProcess(config, client_id, tmp_path / "gateway.log")
    gateway.wait_ready(influx, gateway.start())
    boards = [Board("air-tr-01", boot=2), Board("air-tr-02", boot=2), old]
    old.boot, old.seq = 2, 0
    sent: list[bytes] = []
    t0 = time.time_ns() // 1_000_000 - 600_000
    pub = Publisher(influx, f"{client_id}-pub")
    done = threading.Event()

    def publish() -> None:
        for i in range(150):
            for b in boards:
                sent.append(b.message(t0 + 1000 * i, float(i % 50)))
                pub.publish(f"city/{b.device_id}/telemetry", sent[-1])
        done.set()

    thread = threading.Thread(target=publish, daemon=True)
    try:
        thread.start()
        wait_until(lambda: len(_archived(root)) > 150, 60, "half the stream archived")
        gateway.kill9()
        gateway.wait_ready(influx, gateway.start())
        assert done.wait(120), "the publisher did not finish"
        wait_until(lambda: _pm25(influx) == 450, 60, "all 450 readings stored")
        archived = [r.payload for r in _archived(root)]
        assert sorted(archived) == sorted(sent + [r.payload for r in left])
        assert len(set(archived)) == len(archived)
        counts = rows(influx, "SELECT sum(gaps) AS g, sum(forks) AS f FROM device_integrity")
        assert (counts[0]["g"], counts[0]["f"]) == (0, 0), counts
        receipts = root / "receipts" / f"{segment_name(past)}.json"
        wait_until(receipts.exists, 30, "the left-over hour's receipt")
        (doc,) = json.loads(receipts.read_text())
        receipt = parse_receipt(doc, public)
        assert receipt.root == merkle.root([merkle.leaf_hash(r.payload) for r in left]).hex()
    finally:
        pub.close()
        gateway.stop()
