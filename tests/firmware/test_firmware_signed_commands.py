"""Signed commands (CONTRACT.md v2) on a real firmware process in a 64 KiB heap: a board with
the city's command public key carries out only commands signed for it, new and unexpired,
and its answer says why it refused one. The operator's side is `urbanpulse cmd send`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.boardrun import Supervisor, ack_of, assert_clean, samples
from support.hostboards import Board, Broker, Recorder, statuses
from support.waiting import wait_until
from urbanpulse.cli.main import main
from urbanpulse.contract.signing import public_hex, sign_command, write_private
from urbanpulse.devtools.fleet import EXIT_RESET
from urbanpulse.field.commands import command_for


def publish(rec: Recorder, device_id: str, payload: bytes, retain: bool = False) -> None:
    rec.client.publish(f"city/{device_id}/cmd", payload, qos=1,
                       retain=retain).wait_for_publish(5)


def online_boots(rec: Recorder, device_id: str) -> list[int]:
    return [s["boot"] for s in statuses(rec, device_id) if s["state"] == "online"]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_only_commands_signed_for_this_board_new_and_unexpired_are_carried_out(
        broker: Broker, boards: Callable[..., Board], key: Ed25519PrivateKey) -> None:
    rec = Recorder(broker.port)
    board = boards("air-sig-01", "air", broker.port, cmd_key=public_hex(key))
    dev = board.device_id
    # Kept by the broker and sent to the board as retained at connect: refused however well
    # signed (CONTRACT.md v2), then cleared as an operator would.
    publish(rec, dev, command_for(dev, "flush", {}, key, "c-0"), retain=True)
    sup = Supervisor(board).start()
    try:
        assert ack_of(rec, dev, "c-0") == {"id": "c-0", "ok": False, "error": "retained"}
        publish(rec, dev, b"", retain=True)
        wait_until(lambda: online_boots(rec, dev) == [1], 20, "the board online")
        good = command_for(dev, "identify", {"seconds": 1}, key, "c-1")
        publish(rec, dev, good)
        assert ack_of(rec, dev, "c-1") == {"id": "c-1", "ok": True}

        publish(rec, dev, json.dumps({"id": "c-2", "op": "identify"}).encode())
        forged = command_for(dev, "identify", {}, Ed25519PrivateKey.generate(), "c-3")
        publish(rec, dev, forged)
        # One byte of a genuine command changed (1 s -> 9 s): the signature no longer holds.
        tampered = command_for(dev, "identify", {"seconds": 1}, key, "c-4")
        publish(rec, dev, tampered.replace(b'"seconds":1', b'"seconds":9'))
        publish(rec, dev, command_for("air-sig-02", "identify", {}, key, "c-5"))
        publish(rec, dev, command_for(dev, "identify", {}, key, "c-6", ttl_s=-60))
        publish(rec, dev, good)  # byte for byte again: its n is not new
        truncated = command_for(dev, "identify", {}, key, "c-8")
        publish(rec, dev, truncated[:-10] + b'"}')
        for cid, why in (("c-2", "unsigned"), ("c-3", "bad_signature"),
                         ("c-4", "bad_signature"), ("c-5", "wrong_device"), ("c-6", "expired"),
                         ("c-8", "bad_signature")):
            assert ack_of(rec, dev, cid) == {"id": cid, "ok": False, "error": why}, cid
        replies = [d for d in rec.docs(dev, "cmd/ack") if d.get("id") == "c-1"]
        assert replies == [{"id": "c-1", "ok": True},
                           {"id": "c-1", "ok": False, "error": "replayed"}], replies

        # A change to the board's link needs the operator's explicit flag, signed with it
        # (checked at the next start, like every config: it costs a reboot).
        risky = {"config": {"mqtt": {"host": "203.0.113.9"}}}
        body = {"id": "c-9", "op": "config", **risky, "device": dev,
                "n": time.time_ns() // 1_000_000, "exp": int(time.time()) + 60}
        publish(rec, dev, sign_command(body, key))
        assert ack_of(rec, dev, "c-9", 30) == {
            "id": "c-9", "ok": False, "error": 'config.mqtt needs "unsafe":true'}

        # The counter survives a reboot: the reboot command itself cannot come back.
        reboot = command_for(dev, "reboot", {}, key, "c-10")
        publish(rec, dev, reboot)
        assert ack_of(rec, dev, "c-10")["ok"] is True
        wait_until(lambda: online_boots(rec, dev) == [1, 2, 3], 30, "the third boot")
        publish(rec, dev, reboot)
        wait_until(lambda: len([d for d in rec.docs(dev, "cmd/ack")
                                if d.get("id") == "c-10"]) == 2, 20, "the replay's answer")
        assert [d for d in rec.docs(dev, "cmd/ack") if d.get("id") == "c-10"][-1] == {
            "id": "c-10", "ok": False, "error": "replayed"}
        n = json.loads(reboot)["n"]
        assert int((board.folder / "cmd_n").read_text()) == n
        n_before = len(samples(rec, dev))
        wait_until(lambda: len(samples(rec, dev)) > n_before + 5, 20, "sampling after all that")
        assert online_boots(rec, dev) == [1, 2, 3]
    finally:
        sup.stop()
        rec.close()
    assert sup.codes[:2] == [EXIT_RESET] * 2, sup.codes
    assert_clean(board.console())


def test_cmd_send_signs_publishes_and_prints_each_answer(
        broker: Broker, boards: Callable[..., Board], key: Ed25519PrivateKey, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "command.key"
    write_private(key_file, key)
    (tmp_path / "devices.csv").write_text(
        "device_id,kind,district\nlamp-sig-01,streetlight,north\nlamp-sig-02,streetlight,north\n"
        "air-sig-03,air,south\nlamp-sig-09,streetlight,north\n", encoding="utf-8")
    config = tmp_path / "operator.toml"
    config.write_text(f'[mqtt]\nport = {broker.port}\n[registry]\npath = '
                      f'"{tmp_path / "devices.csv"}"\n', encoding="utf-8")
    started = [boards(d, kind, broker.port, cmd_key=public_hex(key))
               for d, kind in (("lamp-sig-01", "streetlight"), ("lamp-sig-02", "streetlight"),
                               ("air-sig-03", "air"))]
    rec = Recorder(broker.port)
    for b in started:
        b.start()
    try:
        wait_until(lambda: all(online_boots(rec, b.device_id) for b in started), 20,
                   "the boards online")
        common = ["--key-file", str(key_file), "--config", str(config), "--wait", "10"]
        assert main(["cmd", "send", "air-sig-03", "set_interval", "sensor=air",
                     "interval_s=2", *common]) == 0
        assert capsys.readouterr().out.split() == ["air-sig-03", "ok", '{"sensors":', '["air"]}']
        # Every streetlight of the north: the two running say ok, the third never answers.
        assert main(["cmd", "send", "--district", "north", "identify", "seconds=1",
                     *common]) == 1
        lines = sorted(capsys.readouterr().out.splitlines())
        assert [line.split()[:2] for line in lines] == [
            ["lamp-sig-01", "ok"], ["lamp-sig-02", "ok"], ["lamp-sig-09", "no"]], lines
        # Refused before anything is sent: the operator must say --unsafe.
        assert main(["cmd", "send", "air-sig-03", "config", 'config={"wifi":{"ssid":"x"}}',
                     *common]) == 2
        assert "--unsafe" in capsys.readouterr().err
    finally:
        rec.close()
        for b in started:
            b.kill()
