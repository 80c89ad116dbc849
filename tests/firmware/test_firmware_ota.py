"""Updates over the air (README, "Over-the-air updates") on real firmware processes in 64 KiB
heaps and a real Mosquitto: `urbanpulse ota build` makes a release of the next version from a
copy of the firmware, `ota push` (or its Rollout) offers it, the boards fetch, check, reboot
into it on trial, and keep it, or go back by themselves."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from support.boardrun import Supervisor, assert_clean, samples
from support.hostboards import FIRMWARE, Board, Broker, Recorder, statuses
from support.waiting import wait_until
from urbanpulse.cli.main import main
from urbanpulse.config import MqttSettings
from urbanpulse.contract.signing import public_hex, write_private
from urbanpulse.field import release as releases
from urbanpulse.field.rollout import (
    CURRENT,
    FAILED,
    SKIPPED,
    TIMEOUT,
    UPDATED,
    Progress,
    Rollout,
)

OLD = "0.1.0"
NEW = "0.1.1"


@dataclasses.dataclass
class Keys:
    command: Ed25519PrivateKey
    release: Ed25519PrivateKey
    folder: Path

    def board(self) -> dict[str, str]:
        return {"cmd_key": public_hex(self.command), "ota_key": public_hex(self.release)}


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    k = Keys(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), tmp_path / "keys")
    k.folder.mkdir()
    write_private(k.folder / "command.key", k.command)
    write_private(k.folder / "release.key", k.release)
    (k.folder / "release.pub").write_text(public_hex(k.release) + "\n")
    return k


def next_firmware(tmp: Path, name: str, edit: Callable[[Path], None] | None = None) -> Path:
    """A copy of the firmware as version NEW, changed by ``edit``."""
    src = tmp / name
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__"))
    init = src / "urbanpulse_fw" / "__init__.py"
    text = init.read_text()
    assert f'FW_VERSION = "{OLD}"' in text
    init.write_text(text.replace(f'FW_VERSION = "{OLD}"', f'FW_VERSION = "{NEW}"'))
    if edit:
        edit(src / "urbanpulse_fw")
    return src


def patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def foreign_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A release of NEW signed with a key no board has."""
    tmp = tmp_path_factory.mktemp("ota")
    yield releases.build(tmp / "release", Ed25519PrivateKey.generate(),
                         next_firmware(tmp, "fw")).folder


def online(rec: Recorder, device_id: str) -> list[dict[str, object]]:
    return [s for s in statuses(rec, device_id) if s.get("state") == "online"]


def running(rec: Recorder, device_id: str, version: str) -> bool:
    s = online(rec, device_id)
    return bool(s) and s[-1].get("fw") == version


def wait_running(rec: Recorder, board: Board, version: str) -> None:
    wait_until(lambda: running(rec, board.device_id, version), 30, f"{version} online")


def wait_more_samples(rec: Recorder, board: Board) -> None:
    n = len(samples(rec, board.device_id))
    wait_until(lambda: len(samples(rec, board.device_id)) > n + 3, 30, "more samples")


def settings(broker: Broker) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=broker.port)


def test_a_fleet_is_updated_canary_first_and_keeps_reporting(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    src = next_firmware(tmp_path, "fw")
    assert main(["ota", "build", "--out", str(tmp_path / "rel"), "--source", str(src),
                 "--key-file", str(keys.folder / "release.key")]) == 0
    assert main(["ota", "verify", str(tmp_path / "rel"),
                 "--release-key", str(keys.folder / "release.pub")]) == 0
    rec = Recorder(broker.port)
    fleet = [boards(f"lamp-ota-0{i}", "streetlight", broker.port, **keys.board())
             for i in range(3)]
    sups = [Supervisor(b).start() for b in fleet]
    try:
        for b in fleet:
            wait_running(rec, b, OLD)
        config = tmp_path / "operator.toml"
        config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
        argv = ["ota", "push", str(tmp_path / "rel"), "--devices",
                *[b.device_id for b in fleet], "--canary", "1", "--deadline", "120",
                "--key-file", str(keys.folder / "command.key"), "--config", str(config),
                "--release-key", str(keys.folder / "release.pub")]
        assert main(argv) == 0
        for b in fleet:
            assert running(rec, b.device_id, NEW), statuses(rec, b.device_id)
            assert (b.folder / "ota" / "active").read_text() == "a"
            assert not (b.folder / "ota" / "trial").exists()
            assert "update 0.1.1 confirmed" in b.console()
            acks = [d for d in rec.docs(b.device_id, "cmd/ack")
                    if d.get("id", "").startswith("ota-")]
            assert [a.get("state") for a in acks] == ["fetching", "installed", "running"], acks
            assert_clean(b.console())
        # Still measuring after the update, from the new firmware.
        for b in fleet:
            wait_more_samples(rec, b)
        # Offered again: nothing to fetch.
        result = Rollout(settings(broker), releases.load(tmp_path / "rel"), keys.command).run(
            [fleet[0].device_id], 0, 30)
        assert [r.state for r in result] == [CURRENT]
    finally:
        for s in sups:
            s.stop()


def test_a_release_not_signed_with_the_release_key_or_with_a_changed_file_is_refused(
        broker: Broker, boards: Callable[..., Board], keys: Keys,
        foreign_release: Path) -> None:
    folder = foreign_release
    rec = Recorder(broker.port)
    board = boards("air-ota-01", "air", broker.port, **keys.board())
    sup = Supervisor(board).start()
    try:
        wait_until(lambda: running(rec, board.device_id, OLD), 30, "the board online")
        # Signed, but by a key that is not the board's release key: nothing is fetched.
        rel = releases.load(folder)
        [r] = Rollout(settings(broker), rel, keys.command).run([board.device_id], 0, 30)
        assert (r.state, r.detail, r.bytes_sent) == (FAILED, "bad_release_signature", 0)
        # Signed with the right key, and one file's bytes changed on the way: the board finds
        # it when it reads the file back, and keeps the firmware it runs.
        tmp = folder.parent / "resigned"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        sig = keys.release.sign(b"urbanpulse-ota-v1|%s|%s|%d" % (
            rel.version.encode(), rel.manifest_sha256.encode(), len(rel.manifest))).hex()
        rel = dataclasses.replace(rel, signature=sig)
        path, data = rel.files[3]
        bad = dataclasses.replace(rel, files=(*rel.files[:3], (path, data[:-1] + b"\x00"),
                                              *rel.files[4:]))
        [r] = Rollout(settings(broker), bad, keys.command).run([board.device_id], 0, 60)
        assert (r.state, r.detail) == (FAILED, f"bad_hash: ota/a/{path}"), r
        assert not (board.folder / "ota" / "a" / path).exists()
        assert not (board.folder / "ota" / "trial").exists()
        # The same release, now whole: the files already checked are not fetched again.
        [r] = Rollout(settings(broker), rel, keys.command).run([board.device_id], 0, 60)
        assert r.state == UPDATED, r
        assert r.bytes_sent <= sum(len(c) for _, c in rel.files[3:]) + len(rel.manifest)
        wait_until(lambda: running(rec, board.device_id, NEW), 30, "the new version online")
        assert_clean(board.console())
    finally:
        sup.stop()


def test_a_download_cut_off_goes_on_where_it_stopped(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    rel = releases.build(tmp_path / "rel", keys.release, next_firmware(tmp_path, "fw"))
    rec = Recorder(broker.port)
    board = boards("noise-ota-01", "noise", broker.port, **keys.board())
    sup = Supervisor(board).start()
    rollout = Rollout(settings(broker), rel, keys.command)
    done: list[list[Progress]] = []
    runner = threading.Thread(target=lambda: done.append(
        rollout.run([board.device_id], 0, 120)))
    try:
        wait_until(lambda: running(rec, board.device_id, OLD), 30, "the board online")
        runner.start()
        wait_until(lambda: board.device_id in rollout.boards
                   and rollout.boards[board.device_id].bytes_sent > rel.size // 3, 60,
                   "a third of the release sent")
        # The board's connection taken over (its client id), as a network cut does.
        kick = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=board.device_id)
        kick.connect("127.0.0.1", broker.port)
        kick.disconnect()
        runner.join(120)
        [r] = done[0]
        assert r.state == UPDATED, r
        sent = r.bytes_sent
        assert sent < (rel.size + len(rel.manifest)) * 1.1, sent
        assert re.search(r"lost|closed|reconnect", board.console()), board.console()[-2000:]
        assert [a.get("state") for a in rec.docs(board.device_id, "cmd/ack")] == [
            "fetching", "installed", "running"]
        wait_until(lambda: running(rec, board.device_id, NEW), 30, "the new version online")
        files = sorted(p for p in (board.folder / "ota" / "a").rglob("*") if p.is_file())
        assert [(p.relative_to(board.folder / "ota" / "a").as_posix(),
                 hashlib.sha256(p.read_bytes()).digest()) for p in files] == sorted(
            (p, hashlib.sha256(c).digest()) for p, c in rel.files)
    finally:
        sup.stop()


def test_a_push_given_up_and_run_again_goes_on_with_the_same_download(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    """An operator's push that timed out, run again while the board is still fetching: the
    new command takes the download over (its answers carry the new id), nothing twice."""
    rel = releases.build(tmp_path / "rel", keys.release, next_firmware(tmp_path, "fw"))
    rec = Recorder(broker.port)
    board = boards("water-ota-02", "water", broker.port, **keys.board())
    sup = Supervisor(board).start()
    try:
        wait_running(rec, board, OLD)
        first = Rollout(settings(broker), rel, keys.command)
        [a] = first.run([board.device_id], 0, 2)  # gives up while the board fetches
        assert a.state == TIMEOUT and 0 < a.bytes_sent < rel.size, a
        second = Rollout(settings(broker), rel, keys.command)
        [b] = second.run([board.device_id], 0, 90)
        assert b.state == UPDATED, b
        assert a.bytes_sent + b.bytes_sent < (rel.size + len(rel.manifest)) * 1.1
        acks = rec.docs(board.device_id, "cmd/ack")
        assert [(x["id"], x.get("state")) for x in acks] == [
            (first.cid, "fetching"), (second.cid, "fetching"), (second.cid, "installed"),
            (second.cid, "running")], acks
    finally:
        sup.stop()


def test_a_canary_that_cannot_reach_the_broker_rolls_back_and_stops_the_rollout(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    # Boots and runs, but dials the wrong port: it never reaches the broker.
    src = next_firmware(tmp_path, "fw", lambda pkg: patch(
        pkg / "uplink.py", 'self.hosts[0], cfg["mqtt_port"],',
        'self.hosts[0], cfg["mqtt_port"] + 1,'))
    rel = releases.build(tmp_path / "rel", keys.release, src)
    rec = Recorder(broker.port)
    canary = boards("water-ota-01", "water", broker.port, rollback_s=8, **keys.board())
    other = boards("water-ota-02", "water", broker.port, **keys.board())
    sups = [Supervisor(b).start() for b in (canary, other)]
    try:
        for b in (canary, other):
            wait_running(rec, b, OLD)
        results = Rollout(settings(broker), rel, keys.command).run(
            [canary.device_id, other.device_id], 1, 90)
        assert [(r.state, r.detail) for r in results] == [
            (FAILED, "rolled_back"), (SKIPPED, "a canary failed")], results
        assert not (other.folder / "ota").exists()  # never offered
        wait_until(lambda: running(rec, canary.device_id, OLD), 30, "the old version back")
        console = canary.console()
        assert "fw 0.1.1" in console and "back to the last good firmware" in console
        assert not (canary.folder / "ota" / "a").exists()  # its files cleared
        # The old firmware goes on measuring.
        wait_more_samples(rec, canary)
        assert_clean(console)
    finally:
        for s in sups:
            s.stop()


def test_a_release_that_hangs_is_reset_by_the_watchdog_and_rolled_back(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    src = next_firmware(tmp_path, "fw", lambda pkg: patch(
        pkg / "mainloop.py", "        self.up.start()\n",
        "        self.up.start()\n        while True:\n            time.sleep(1)\n"))
    rel = releases.build(tmp_path / "rel", keys.release, src)
    rec = Recorder(broker.port)
    board = boards("parking-ota-01", "parking", broker.port, watchdog_s=2, **keys.board())
    sup = Supervisor(board, watchdog=True).start()
    try:
        wait_until(lambda: running(rec, board.device_id, OLD), 30, "the board online")
        [r] = Rollout(settings(broker), rel, keys.command).run([board.device_id], 0, 60)
        assert (r.state, r.detail) == (FAILED, "rolled_back"), r
        wait_until(lambda: running(rec, board.device_id, OLD), 30, "the old version back")
        console = board.console()
        assert "hostwdt: not fed" in console
        assert "back to the last good firmware" in console
    finally:
        sup.stop()


def test_a_board_in_safe_mode_takes_an_update_and_starts_with_its_sensors(
        broker: Broker, boards: Callable[..., Board], keys: Keys, tmp_path: Path) -> None:
    rel = releases.build(tmp_path / "rel", keys.release, next_firmware(tmp_path, "fw"))
    rec = Recorder(broker.port)
    board = boards("soil-ota-01", "soil", broker.port, **keys.board())
    board.folder.mkdir(parents=True)
    (board.folder / "crashes").write_text("4\n")  # four crashes behind it, and a fifth reset
    (board.folder / "reset_cause").write_text("hard")
    sup = Supervisor(board).start()
    try:
        wait_running(rec, board, OLD)
        assert "safe mode" in board.console() and samples(rec, board.device_id) == []
        [r] = Rollout(settings(broker), rel, keys.command).run([board.device_id], 0, 60)
        assert r.state == UPDATED, r
        wait_more_samples(rec, board)  # the new firmware, with its sensors
        assert not (board.folder / "crashes").exists()
    finally:
        sup.stop()
