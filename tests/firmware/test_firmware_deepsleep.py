"""Battery boards with their real drivers (the emulated chips on their buses) through a broker
outage of 30 minutes of board time: every wake's reading is kept in flash until a publishing
wake gets it out, and arrives once, whole."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.boardrun import Supervisor, assert_clean, samples
from support.hostboards import Board, Broker, Recorder
from support.waiting import wait_until
from urbanpulse.devtools.fleet import DRIVER_SENSORS, EXIT_DEEPSLEEP

SCALE = 60  # board time per real time: the outage's 30 minutes take 30 s
OUTAGE_MS = 30 * 60_000
EVERY = 3  # wakes 0, 3, 6, ... connect and publish what the wakes since took
# What each board measures at every wake: its kind's drivers (the air board only its SCD41:
# a PMS5003 warms up 30 s at every wake, tests/firmware/test_firmware_resilience.py).
BOARDS: dict[str, tuple[list[dict[str, Any]], set[str]]] = {
    "air": ([{"type": "scd41", "th": True}], {"co2", "temperature", "humidity"}),
    "water": (DRIVER_SENSORS["water"], {"water_level"}),
    "soil": (DRIVER_SENSORS["soil"], {"soil_moisture"}),
    "parking": (DRIVER_SENSORS["parking"], {"occupied"}),
}


def next_publishing(started: int) -> int:
    """The index of the first publishing wake not started yet (a margin of one wake)."""
    return (started + 1 + EVERY - 1) // EVERY * EVERY


def test_battery_boards_with_drivers_deliver_every_reading_through_an_outage(
        tmp_path: Path, boards: Callable[..., Board]) -> None:
    broker = Broker(tmp_path / "mosquitto", persistent=True)
    broker.start()
    # A persistent session: the recorder misses nothing while the broker is down.
    rec = Recorder(broker.port, client_id="fw-deepsleep-spy", persistent=True)
    start_ms = int(time.time() * 1000) - 3 * 3_600_000
    fleet = {kind: boards(f"{kind}-ds-outage", kind, broker.port, sensors=sensors,
                          deep_sleep={"wake_s": 300, "publish_every": EVERY},
                          max_flash_bytes=65536,
                          host_clock={"scale": SCALE, "start_ms": start_ms})
             for kind, (sensors, _) in BOARDS.items()}
    sups = {kind: Supervisor(b, max_starts=1000).start() for kind, b in fleet.items()}
    try:
        wait_until(lambda: all(len(s.codes) >= 2 for s in sups.values()), 120, "2 wakes each")
        broker.stop()
        # 30 minutes of board time, and until each board had a wake that should have
        # published start after the broker went down, and end.
        first = {kind: next_publishing(s.starts) for kind, s in sups.items()}
        time.sleep(OUTAGE_MS / SCALE / 1000)
        wait_until(lambda: all(len(s.codes) > first[k] for k, s in sups.items()), 180,
                   "a publishing wake in the outage")
        broker.start()
        # Each board ends with a publishing wake after the outage, which sends what is left.
        for s in sups.values():
            s.max_starts = next_publishing(s.starts) + 1
        wait_until(lambda: all(len(s.codes) >= s.max_starts for s in sups.values()), 180,
                   "the last publishing wakes")
        time.sleep(1)  # nothing more comes
    finally:
        for sup in sups.values():
            sup.stop()
        rec.close()
        broker.stop()
    for kind, board in fleet.items():
        wakes = sups[kind].max_starts
        got = samples(rec, board.device_id)
        assert sups[kind].codes == [EXIT_DEEPSLEEP] * wakes, (kind, board.console()[-3000:])
        assert len(got) == wakes, (kind, len(got), wakes)  # each wake's reading, once
        times = [s["t"] for s in got]
        assert times == sorted(times) and len(set(times)) == wakes, (kind, times)
        fields = BOARDS[kind][1]
        short = [s for s in got if not fields <= set(s)]
        assert not short, (kind, short)
        assert "not_ready" not in board.console(), kind
        assert_clean(board.console())
