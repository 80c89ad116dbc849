"""The board firmware's resilience, end to end: real ``micropython`` boards (the compiled
bundle, ``-X heapsize=64k``) against a private Mosquitto, watched by a paho subscriber.

Remote commands and their acks (incl. refusals), config updates persisted or rolled back,
the health report, samples taken before NTP stamped once the time is known, the flash spool
surviving a kill during an outage, the watchdog, deep sleep, and a day of sampling with a
30-minute broker outage in a 64 KiB heap (time sped up by the host-only ``host_clock``).

On the host a board "reboots" by exiting with code 3 and "deep sleeps" by exiting with code 4
(firmware/urbanpulse_fw/hwmisc.py); ``Supervisor`` starts it again, as the fleet does.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from support.boardrun import Supervisor, ack_of, assert_clean, command, samples
from support.hostboards import (
    Board,
    Broker,
    Recorder,
    flash_samples,
    sample_t,
    statuses,
    telemetry_problems,
)
from support.services import free_port
from support.waiting import wait_until
from urbanpulse.devtools.fleet import EXIT_DEEPSLEEP

HEALTH_KEYS = {"t", "rssi", "heap_free", "uptime", "buffered", "dropped", "fw", "reset_cause",
               "faults"}


def wait_for_progress(value: Callable[[], int], target: int, timeout_s: float, what: str,
                      console: Callable[[], str], stall_s: float = 45) -> None:
    """Until value() reaches target; fails early, with the console, if it stops growing for
    stall_s (a board that is stuck, e.g. out of memory, would only run out the timeout)."""
    deadline = time.monotonic() + timeout_s
    last, since = value(), time.monotonic()
    while (v := value()) < target:
        now = time.monotonic()
        if v != last:
            last, since = v, now
        if now - since > stall_s or now > deadline:
            assert_clean(console())
            raise AssertionError(f"waiting for {what}: {v} of {target} after "
                                 f"{timeout_s if now > deadline else stall_s} s")
        time.sleep(0.2)


def test_config_that_cannot_connect_is_rolled_back(
        broker: Broker, boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("air-rb-01", "air", broker.port, rollback_s=3)
    sup = Supervisor(board).start()
    dev = board.device_id
    try:
        wait_until(lambda: len(rec.docs(dev, "status")) >= 1, 20, "online")
        # A change to the board's link: the operator says "unsafe" on purpose.
        command(rec, dev, {"id": "r-1", "op": "config", "unsafe": True,
                           "config": {"mqtt": {"port": free_port()}}})
        # The board reboots onto a broker that is not there, gives up after rollback_s,
        # goes back to config.bak and reconnects; the command is answered then.
        assert ack_of(rec, dev, "r-1", 60)["ok"] is True
        wait_until(lambda: [s.get("boot") for s in statuses(rec, dev)
                            if s["state"] == "online"][-1:] == [3], 30, "online again")
    finally:
        sup.stop()
        rec.close()
    config = json.loads((board.folder / "config.json").read_text())
    assert config["mqtt"]["port"] == broker.port
    assert not (board.folder / "config.trial").exists()
    console = board.console()
    assert "new config did not reach the broker in time: back to config.bak" in console
    assert_clean(console)


def test_health_report_and_a_bad_sensor_entry(broker: Broker,
                                              boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("noise-h-01", "noise", broker.port, health_interval_s=1, max_messages=4,
                   sensors=[{"type": "sim", "kind": "noise"}, {"type": "sim", "kind": "nope"}])
    board.start()
    try:
        assert board.wait(40) == 0, board.console()
        wait_until(lambda: len(rec.docs(board.device_id, "health")) >= 2, 10, "health")
    finally:
        rec.close()
    health = rec.docs(board.device_id, "health")
    for h in health:
        assert set(h) >= HEALTH_KEYS, h
        assert h["reset_cause"] == "power" and h["fw"] == "0.1.0" and h["faults"] == ""
        assert h["dropped"] == 0 and h["buffered"] >= 0 and 1000 < h["heap_free"] < 65536
        assert -130 <= h["rssi"] <= 0 and h["uptime"] >= 0
        assert "sensors[1].kind" in h["config_error"], h
        assert abs(h["t"] - time.time() * 1000) < 60_000
    assert [h["uptime"] for h in health] == sorted(h["uptime"] for h in health)
    # The good sensor still reports.
    assert all(not telemetry_problems(m.payload, {"noise"}, 50, int(time.time() * 1000) + 1)
               for m in rec.on(board.device_id, "telemetry"))
    assert len(rec.on(board.device_id, "telemetry")) == 4


def test_samples_before_ntp_are_stamped_once_the_time_is_known(
        broker: Broker, boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("soil-ntp-01", "soil", broker.port, sample_interval_s=0.2,
                   publish_interval_s=0.5, host_clock={"scale": 1, "start_ms": None},
                   max_buffer_bytes=1600)  # samples wait in RAM for the time: room for 10
    board.folder.mkdir(parents=True)
    (board.folder / "ntp_down").write_text("")
    started_ms = time.time() * 1000
    board.start()
    clock_set = re.compile(r"clock set: (\d+) samples stamped")
    try:
        wait_until(lambda: "clock not set" in board.console(), 15, "an unset clock")
        time.sleep(2)  # samples are taken, nothing can be sent yet
        assert rec.on(board.device_id, "telemetry") == [], "no sample stamped 2000-01-01"
        (board.folder / "ntp_down").unlink()
        unlinked_ms = time.time() * 1000
        # NTP is retried with a growing backoff (2 s, 4 s, 8 s...): when the clock gets set
        # is up to the board, so the test asks the board rather than assuming a speed.
        wait_until(lambda: clock_set.search(board.console()) is not None, 60, "the clock set")
        seen_ms = time.time() * 1000
        match = clock_set.search(board.console())
        assert match is not None
        stamped = int(match.group(1))
        wait_until(lambda: len(samples(rec, board.device_id)) >= stamped + 10, 30, "telemetry")
    finally:
        board.kill()
        rec.close()
    times = [s["t"] for s in samples(rec, board.device_id)]
    assert times == sorted(times) and len(set(times)) == len(times)
    # The RAM for unstamped samples holds 10: the oldest go first while NTP is down.
    assert 5 <= stamped <= 10, stamped
    early, first_synced = times[:stamped], times[stamped]
    # The first sample after the sync carries the time NTP gave (the host's)...
    assert unlinked_ms - 50 <= first_synced <= seen_ms + 50, (
        first_synced - unlinked_ms, seen_ms - unlinked_ms)
    # ... and the ones before it are stamped where they were taken: every 200 ms, back from it,
    # none before the board started.
    gaps = [b - a for a, b in itertools.pairwise([*early, first_synced])]
    assert all(150 <= g <= 600 for g in gaps), gaps
    assert early[0] > started_ms - 500, early[0] - started_ms


def test_spool_survives_a_kill_during_an_outage(tmp_path: Path,
                                                boards: Callable[..., Board]) -> None:
    b = Broker(tmp_path / "late")
    board = boards("water-sp-01", "water", b.port, sample_interval_s=0.05,
                   publish_interval_s=0.2, max_buffer_bytes=1024, max_flash_bytes=65536)
    board.start()
    try:
        # No broker: the RAM buffer overflows into flash records.
        wait_until(lambda: spooled(board.folder) >= 40, 30, "samples in flash")
        board.kill()  # a power cut: no clean-up at all
        in_flash = spooled_times(board.folder)
        b.start()
        rec = Recorder(b.port)
        try:
            board.start(write_config=False)
            wait_until(lambda: set(in_flash) <= {s["t"] for s in samples(rec, board.device_id)},
                       30, "every sample that was in flash")
        finally:
            board.kill()
            rec.close()
    finally:
        b.stop()
    got = [s["t"] for s in samples(rec, board.device_id)]
    assert len(got) == len(set(got)), "no sample twice"
    assert got[:len(in_flash)] == in_flash, "the flash spool first, oldest first"
    assert "boot 2" in board.console()
    assert_clean(board.console())


def test_clean_stop_with_the_broker_gone_keeps_the_message_in_flight(
        tmp_path: Path, boards: Callable[..., Board]) -> None:
    # The broker dies with a telemetry message published and not acknowledged; a second later
    # the board is stopped cleanly (Ctrl-C; a reboot or deep sleep stops the same way). Every
    # sample taken has then arrived or waits in flash, the in-flight ones included, and the
    # console's "kept for later" is what flash holds.
    b = Broker(tmp_path / "gone")
    b.start()
    rec = Recorder(b.port)
    board = boards("water-if-01", "water", b.port, sample_interval_s=0.02,
                   publish_interval_s=0.02, max_buffer_bytes=4096, max_flash_bytes=65536)
    try:
        board.start()
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 5, 30, "telemetry")
        assert b.process is not None
        b.process.kill()
        b.process.wait()
        n = len(samples(rec, board.device_id))
        time.sleep(1)
        board.interrupt()
    finally:
        board.kill()
        rec.close()
        b.stop()
    console = board.console()
    assert_clean(console)
    taken = board.taken()
    kept = int(re.findall(r"kept for later: (\d+)", console)[-1])
    got = {s["t"] for s in samples(rec, board.device_id)}
    assert len(got) >= n > 0
    in_flash = flash_samples(board.folder)
    assert len(got | in_flash) == taken, (taken, len(got), len(in_flash))
    assert kept == len(in_flash), (kept, len(in_flash))
    assert spooled_times(board.folder) == sorted(spooled_times(board.folder)), "oldest first"


def spooled_times(folder: Path) -> list[int]:
    out = []
    for seg in sorted((folder / "spool").glob("[0-9]*"), key=lambda p: int(p.name)):
        for line in seg.read_bytes().splitlines():
            if line.startswith(b'{"t":') and b"*" in line:
                out.append(json.loads(line.rsplit(b"*", 1)[0])["t"])
    return out


def spooled(folder: Path) -> int:
    return len(spooled_times(folder)) if (folder / "spool").exists() else 0


def test_watchdog_resets_a_stalled_loop(broker: Broker,
                                        boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("light-wd-01", "streetlight", broker.port, watchdog_s=3)
    try:
        board.start()
        # Healthy: it keeps feeding the watchdog well past the timeout.
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 1, 20, "telemetry")
        time.sleep(5)
        assert board.process is not None and board.process.poll() is None, board.console()
        board.interrupt(10)
        # Stalled: an NTP call that never returns (as a socket without a timeout would).
        (board.folder / "ntp_hang").write_text("")
        board.start(write_config=False)
        code = board.wait(30)
        assert code == -signal.SIGKILL, (code, board.console())
        assert "not fed for 3000 ms, resetting" in board.console()
        (board.folder / "ntp_hang").unlink()
        n = len(rec.docs(board.device_id, "health"))
        board.start(write_config=False)
        wait_until(lambda: len(rec.docs(board.device_id, "health")) > n, 20, "health")
    finally:
        board.kill()
        rec.close()
    assert rec.docs(board.device_id, "health")[-1]["reset_cause"] == "wdt"


def test_deep_sleep_wakes_samples_and_publishes_every_nth_wake(
        broker: Broker, boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    board = boards("soil-ds-01", "soil", broker.port,
                   deep_sleep={"wake_s": 0.05, "publish_every": 3})
    sup = Supervisor(board, max_starts=7).start()
    try:
        wait_until(lambda: len(sup.codes) >= 7, 90, "7 wake-ups")
        wait_until(lambda: len(samples(rec, board.device_id)) >= 7, 10, "all samples")
    finally:
        sup.stop()
        rec.close()
    assert sup.codes == [EXIT_DEEPSLEEP] * 7, (sup.codes, board.console())
    per_boot: dict[int, int] = {}
    for d in rec.docs(board.device_id, "telemetry"):
        per_boot[d["boot"]] = per_boot.get(d["boot"], 0) + len(d["samples"])
    # Every wake is a boot; wakes 0, 3 and 6 connect and send what the wakes since took.
    assert per_boot == {1: 1, 4: 3, 7: 3}, per_boot
    times = [s["t"] for s in samples(rec, board.device_id)]
    assert times == sorted(times) and len(set(times)) == 7
    assert (board.folder / "rtcmem").read_text() == "7"
    causes = [h["reset_cause"] for h in rec.docs(board.device_id, "health")]
    assert causes == ["power", "deepsleep", "deepsleep"], causes
    assert_clean(board.console())


def test_a_day_with_a_30_minute_outage_in_64k(tmp_path: Path,
                                              boards: Callable[..., Board]) -> None:
    """24 h of sampling every 10 s (the host clock runs 1440 times faster), the broker gone
    for 30 minutes in the middle: every sample arrives exactly once at Mosquitto."""
    scale, day_ms = 1440, 86_400_000
    b = Broker(tmp_path / "soak", persistent=True)
    b.start()
    rec = Recorder(b.port, client_id="fw-soak-spy", persistent=True)
    start_ms = int(time.time() * 1000) - day_ms - 3 * 3_600_000  # samples in the past
    board = boards("air-soak-01", "air", b.port, sample_interval_s=10, publish_interval_s=60,
                   health_interval_s=300, max_buffer_bytes=2048, max_flash_bytes=262144,
                   host_clock={"scale": scale, "start_ms": start_ms})
    try:
        board.start()

        def board_time() -> int:  # board time from the first sample to the newest
            first = sample_t(rec, board.device_id, newest=False)
            return sample_t(rec, board.device_id, newest=True) - first if first else 0

        wait_for_progress(board_time, 8 * 3_600_000, 120, "8 h of samples", board.console)
        b.stop()
        time.sleep(1800_000 / scale / 1000 + 0.5)  # 30 minutes of board time, and a bit
        b.start()
        wait_for_progress(board_time, day_ms, 240, "24 h of samples", board.console)
        board.interrupt()
    finally:
        board.kill()
        rec.close()
        b.stop()
    console = board.console()
    assert_clean(console)
    taken = board.taken()
    received = rec.on(board.device_id, "telemetry")
    # Kept beside the console, for a look at what went wrong.
    (board.folder / "telemetry.jsonl").write_bytes(b"\n".join(m.payload for m in received))
    seen: dict[int, bytes] = {}
    for m in received:
        doc = json.loads(m.payload)
        assert seen.setdefault(doc["seq"], m.payload) == m.payload, "a redelivery is identical"
    got = [s["t"] for payload in seen.values() for s in json.loads(payload)["samples"]]
    unique = set(got)
    assert len(got) == len(unique), "no sample in two messages"
    # Every sample taken arrived, or (taken at the very end) waits in flash for the next
    # start; none both.
    flash = flash_samples(board.folder)
    assert len(unique | flash) == taken and not unique & flash, (len(unique), len(flash), taken)
    times = sorted(unique)
    assert times[-1] - times[0] >= day_ms - 60_000
    assert sorted(seen) == list(range(len(seen))), "seq 0..n-1, none missing"
    # The outage went through the flash spool: the reconnect found far more than RAM holds.
    buffered = [int(x) for x in re.findall(r"mqtt connected .*\(buffered (\d+)", console)]
    assert len(buffered) >= 2 and max(buffered[1:]) >= 150, buffered
    heap = [h["heap_free"] for h in rec.docs(board.device_id, "health")]
    assert heap and min(heap) > 1000, heap


def test_ntp_asks_the_brokers_host_unless_told_another(
        broker: Broker, boards: Callable[..., Board]) -> None:
    # ntp_servers: the servers that answer here (the NTP stand-in, firmware/host/ntptime.py);
    # not the public pool, as on a city network that blocks it.
    rec = Recorder(broker.port)
    clock = {"scale": 1, "start_ms": None}  # unset until NTP answers
    default = boards("soil-ntpa-01", "soil", broker.port, sample_interval_s=0.5,
                     publish_interval_s=0.5, host_clock=clock)
    named = boards("soil-ntpb-01", "soil", broker.port, sample_interval_s=0.5,
                   publish_interval_s=0.5, host_clock=clock, ntp_host="ntp.city.example")
    try:
        for board in (default, named):
            board.folder.mkdir(parents=True)
            (board.folder / "ntp_servers").write_text("127.0.0.1\npool.ntp.org\n")
            board.start()
        wait_until(lambda: len(samples(rec, default.device_id)) >= 3, 30,
                   "the default board's clock set by the broker's host")
        assert "clock not set" in named.console()
        assert samples(rec, named.device_id) == [], "its own server does not answer yet"
        (named.folder / "ntp_servers").write_text("ntp.city.example\n")
        wait_until(lambda: len(samples(rec, named.device_id)) >= 3, 60,
                   "the named server's answer")
    finally:
        for board in (default, named):
            board.kill()
        rec.close()
    for board in (default, named):
        assert_clean(board.console())


def test_ten_days_across_an_esp32_tick_wrap(broker: Broker,
                                            boards: Callable[..., Board]) -> None:
    """An ESP32's ticks_ms wraps at 2^30 ms (12.4 days) and ticks_diff means something up to
    6.2 days only. The board's schedule clock wraps at 2^30 here too (host_clock.wrap_in_s),
    a day after the start, and the board runs 10 days (the clock 20 000 times faster):
    sampling and publishing go on across the wrap, and the uptime in health counts on past
    6.2 days."""
    scale, day_ms = 20_000, 86_400_000
    rec = Recorder(broker.port)
    start_ms = int(time.time() * 1000) - 11 * day_ms  # the samples' times lie in the past
    board = boards("air-wrap-01", "air", broker.port, sample_interval_s=600,
                   publish_interval_s=3600, health_interval_s=43200,
                   host_clock={"scale": scale, "start_ms": start_ms, "wrap_in_s": 86400})
    try:
        board.start()
        wait_for_progress(lambda: len(rec.docs(board.device_id, "health")), 21, 120,
                          "10 days of health reports", board.console)
        board.interrupt()
    finally:
        board.kill()
        rec.close()
    assert_clean(board.console())
    health = rec.docs(board.device_id, "health")
    uptimes = [h["uptime"] for h in health]
    assert uptimes == sorted(uptimes) and uptimes[-1] >= 10 * 86400, uptimes
    # The uptime counts what the wall clock counts (board seconds; a pass at this speed is
    # up to a few hundred of them on a loaded machine).
    for h in health[1:]:
        counted, elapsed = h["uptime"] - uptimes[0], (h["t"] - health[0]["t"]) // 1000
        assert abs(counted - elapsed) <= 1000, (counted, elapsed)
    times = [s["t"] for s in samples(rec, board.device_id)]
    assert times == sorted(times) and len(set(times)) == len(times)
    # A sample every 10 minutes, across the wrap: none missing for long (a wrong span of
    # ticks would stop the schedule for days), nearly all there.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 3_600_000, max(gaps)
    assert times[-1] - times[0] >= 10 * day_ms - 3_600_000
    assert len(times) >= 0.9 * (times[-1] - times[0]) / 600_000, len(times)


def test_after_five_unplanned_resets_in_a_row_the_board_starts_in_safe_mode(
        broker: Broker, boards: Callable[..., Board]) -> None:
    """Four crashes behind it (the count in flash) and a fifth reset nobody meant: the board
    starts without its sensors, connects, says why in its health report and takes commands;
    a reboot command brings it back with its sensors. A planned start (a reboot) or a
    power-on does not count."""
    rec = Recorder(broker.port)
    board = boards("air-safe-01", "air", broker.port, health_interval_s=1)
    board.folder.mkdir(parents=True)
    (board.folder / "crashes").write_text("4\n")
    (board.folder / "reset_cause").write_text("hard")  # a reset without an intent: a crash
    sup = Supervisor(board).start()
    dev = board.device_id
    try:
        wait_until(lambda: rec.docs(dev, "health"), 30, "a health report")
        health = rec.docs(dev, "health")[0]
        assert health["reset_cause"] == "crash"
        assert "safe mode: 5 unplanned resets in a row" in health["config_error"], health
        command(rec, dev, {"id": "c-1", "op": "identify", "seconds": 1})
        assert ack_of(rec, dev, "c-1")["ok"] is True
        assert samples(rec, dev) == [], "no sensors in safe mode"
        command(rec, dev, {"id": "c-2", "op": "reboot"})
        assert ack_of(rec, dev, "c-2")["ok"] is True
        wait_until(lambda: len(samples(rec, dev)) >= 3, 40, "readings after the reboot")
        last = rec.docs(dev, "health")[-1]
        assert last["reset_cause"] == "reboot" and "config_error" not in last, last
        assert not (board.folder / "crashes").exists()
    finally:
        sup.stop()
        rec.close()
    assert "safe mode" in board.console()
    assert_clean(board.console())


def test_deep_sleep_waits_for_each_sensors_first_reading(
        broker: Broker, boards: Callable[..., Board]) -> None:
    """A battery board with real drivers (emulated chips): each wake waits for the SCD41's
    first measurement (5 s after its start) and the PMS5003's frames, then sleeps; the
    PMS5003 is put to sleep before the board sleeps and warmed up after it wakes (30 s), so
    its first wake reads it and the later ones wait out the warm-up."""
    rec = Recorder(broker.port)
    board = boards("air-ds-02", "air", broker.port,
                   sensors=[{"type": "scd41", "th": True}, {"type": "pms5003"}],
                   deep_sleep={"wake_s": 0.05, "publish_every": 2})
    sup = Supervisor(board, max_starts=3).start()
    try:
        wait_until(lambda: len(sup.codes) >= 3, 150, "3 wake-ups")
        wait_until(lambda: len(samples(rec, board.device_id)) >= 3, 10, "the wakes' samples")
    finally:
        sup.stop()
        rec.close()
    assert sup.codes == [EXIT_DEEPSLEEP] * 3, (sup.codes, board.console())
    got = samples(rec, board.device_id)
    assert all({"co2", "temperature", "humidity", "pm25"} <= set(s) for s in got), got
    assert (board.folder / "pms_rest").exists(), "the PMS5003 sleeps with the board"
    assert_clean(board.console())
