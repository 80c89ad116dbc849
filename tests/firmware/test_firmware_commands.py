"""Remote commands on a real firmware process: answered, refused with the reason, and never
carried out when they come retained (a retained reboot would reboot the board on every
connect)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from support.boardrun import Supervisor, ack_of, acks, assert_clean, command, samples
from support.hostboards import Board, Broker, Recorder, statuses
from support.waiting import wait_until
from urbanpulse.devtools.fleet import EXIT_RESET


def test_commands_are_answered_and_refusals_name_the_problem(
        broker: Broker, boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("air-cmd-01", "air", broker.port, health_interval_s=1)
    sup = Supervisor(board).start()
    dev = board.device_id
    try:
        wait_until(lambda: len(rec.docs(dev, "health")) >= 1, 20, "the boot health report")
        command(rec, dev, {"id": "c-1", "op": "identify", "seconds": 1})
        assert ack_of(rec, dev, "c-1")["ok"] is True
        command(rec, dev, {"id": "c-2", "op": "set_interval", "sensor": "air",
                           "interval_s": 0.6})
        assert ack_of(rec, dev, "c-2") == {"id": "c-2", "ok": True, "sensors": ["air"]}
        n = len(samples(rec, dev))
        command(rec, dev, {"id": "c-3", "op": "flush"})
        assert ack_of(rec, dev, "c-3")["ok"] is True
        wait_until(lambda: len(samples(rec, dev)) >= n + 8, 20, "slower sampling")
        times = [s["t"] for s in samples(rec, dev)][n:]
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        assert 500 < gaps[len(gaps) // 2] < 800, f"median gap {gaps[len(gaps) // 2]} ms, not 600"
        command(rec, dev, {"id": "c-4", "op": "self_destruct"})
        command(rec, dev, "not json")
        command(rec, dev, {"id": "c-5", "op": "set_interval", "sensor": "air",
                           "interval_s": "fast"})
        command(rec, dev, {"id": "c-6", "op": "set_interval", "sensor": "pm-9",
                           "interval_s": 5})
        assert ack_of(rec, dev, "c-4") == {"id": "c-4", "ok": False,
                                           "error": "unknown op 'self_destruct'"}
        assert "interval_s" in ack_of(rec, dev, "c-5")["error"]
        assert "pm-9" in ack_of(rec, dev, "c-6")["error"]
        wait_until(lambda: None in acks(rec, dev), 10, "an answer to the bad JSON")
        assert acks(rec, dev)[None]["ok"] is False

        # A config that fails validation: refused with the key named, nothing changed (checked
        # at the next start, like every config: one reboot each).
        before = (board.folder / "config.json").read_text()
        command(rec, dev, {"id": "c-7", "op": "config", "config": {"mqtt": {"port": "x"}}})
        assert ack_of(rec, dev, "c-7", 30) == {
            "id": "c-7", "ok": False, "error": 'config.mqtt needs "unsafe":true'}
        # The time source too: TLS and the commands' expiry rest on the clock.
        command(rec, dev, {"id": "c-7n", "op": "config", "config": {"ntp_host": "evil.test"}})
        assert ack_of(rec, dev, "c-7n", 30) == {
            "id": "c-7n", "ok": False, "error": 'config.ntp_host needs "unsafe":true'}
        command(rec, dev, {"id": "c-7u", "op": "config", "unsafe": True,
                           "config": {"mqtt": {"port": "x"}}})
        refused = ack_of(rec, dev, "c-7u", 30)
        assert refused["ok"] is False and "mqtt.port" in refused["error"], refused
        assert (board.folder / "config.json").read_text() == before
        # A good one: persisted (the old file kept as config.bak), applied after the reboot.
        command(rec, dev, {"id": "c-8", "op": "config", "config": {"health_interval_s": 2}})
        assert ack_of(rec, dev, "c-8", 30) == {"id": "c-8", "ok": True}
        assert json.loads((board.folder / "config.json").read_text())["health_interval_s"] == 2
        assert json.loads((board.folder / "config.bak").read_text())["health_interval_s"] == 1
        assert not (board.folder / "config.trial").exists(), "confirmed once connected"

        command(rec, dev, {"id": "c-9", "op": "reboot"})
        assert ack_of(rec, dev, "c-9")["ok"] is True
        wait_until(lambda: [s.get("boot") for s in statuses(rec, dev)
                            if s["state"] == "online"][-1:] == [5], 30, "the 5th boot")
        wait_until(lambda: rec.docs(dev, "health")[-1]["reset_cause"] == "reboot", 20,
                   "health after the reboot")
    finally:
        sup.stop()
        rec.close()
    console = board.console()
    assert "identify: blinking the status LED for 1 s" in console
    assert "identify: done" in console
    assert sup.codes[:4] == [EXIT_RESET] * 4, sup.codes
    assert_clean(console)


def test_a_retained_command_is_refused_not_carried_out(
        broker: Broker, boards: Callable[..., Board]) -> None:
    """Left retained on the broker, it reaches the board at every connect: refused each time
    with the reason, and the board does not reboot."""
    rec = Recorder(broker.port)
    board = boards("air-ret-01", "air", broker.port)
    dev = board.device_id
    retained = json.dumps({"id": "r-1", "op": "reboot"})
    rec.client.publish(f"city/{dev}/cmd", retained, qos=1, retain=True).wait_for_publish(5)
    sup = Supervisor(board).start()
    try:
        assert ack_of(rec, dev, "r-1") == {"id": "r-1", "ok": False, "error": "retained"}
        # Still the first boot, well after a reboot would have happened (5 s at most).
        wait_until(lambda: len(samples(rec, dev)) >= 12, 30, "sampling going on")
        assert [s.get("boot") for s in statuses(rec, dev) if s["state"] == "online"] == [1]
        # A command sent live is carried out as before.
        command(rec, dev, {"id": "c-1", "op": "identify", "seconds": 1})
        assert ack_of(rec, dev, "c-1")["ok"] is True
    finally:
        rec.client.publish(f"city/{dev}/cmd", b"", qos=1, retain=True).wait_for_publish(5)
        sup.stop()
        rec.close()
    assert sup.codes[:1] != [EXIT_RESET], sup.codes
    assert_clean(board.console())
