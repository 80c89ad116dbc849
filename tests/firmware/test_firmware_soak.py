"""A day of sampling with every kind's real sensor drivers, in the heap a board gets.

One board per kind, all at once, each with the drivers the fleet gives that kind
(``urbanpulse.devtools.fleet.DRIVER_SENSORS``) talking to the host's emulated chips (their own
process, firmware/host/emuserver.py), the compiled bundle in ``micropython -X heapsize=64k``,
what the fleet gives every board (nothing bigger hides a failure here). Time runs 720 times
faster (the host-only ``host_clock``): 24 h of sampling every 30 s in about two minutes, with
the broker gone for 30 minutes after 8 h. Per board: every sample taken arrives exactly once
(or, taken in the last moment, waits in the flash spool for the next start), seq without gaps,
valid contract messages with the kind's driver fields, no MemoryError, the least free heap in
health above 1000 bytes, no driver fault, and the outage went through the flash spool.

A failing kind does not hide the others: the test collects every kind's problems and fails
with all of them.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from support.hostboards import (
    DRIVER_FIELDS,
    Board,
    Broker,
    Recorder,
    flash_samples,
    sample_t,
    statuses,
    telemetry_problems,
)
from urbanpulse.devtools import hostboard
from urbanpulse.devtools.fleet import DRIVER_SENSORS, HEAP

SCALE = 720  # board time per real time: a day in 2 minutes
DAY_MS = 86_400_000
OUTAGE_MS = 1_800_000
SAMPLE_S = 30  # 2880 samples a day per board
STALL_S = 45  # real seconds without a new sample: a board this stuck is not waited for


def wait_for_hours(rec: Recorder, fleet: dict[str, Board], hours: float, timeout_s: float,
                   stalled: dict[str, str]) -> None:
    """Until every board sent ``hours`` of samples (board time), has exited (its console tells
    why) or sent nothing new for STALL_S (noted in ``stalled``, by kind); the checks
    afterwards report every board that did not get there."""
    deadline = time.monotonic() + timeout_s
    first: dict[str, int] = {}
    newest: dict[str, tuple[int, float]] = {}  # kind -> (newest t, when it changed)
    while True:
        behind = []
        now = time.monotonic()
        for kind, b in fleet.items():
            if b.process is None or b.process.poll() is not None or kind in stalled:
                continue
            first[kind] = first.get(kind) or sample_t(rec, b.device_id, newest=False)
            t = sample_t(rec, b.device_id, newest=True)
            if newest.get(kind, (None, 0.0))[0] != t:
                newest[kind] = (t, now)
            if first[kind] and t - first[kind] >= hours * 3_600_000:
                continue
            if now - newest[kind][1] > STALL_S:
                stalled[kind] = f"no new sample for {STALL_S} s before {hours} h"
                continue
            behind.append(kind)
        if not behind:
            return
        if now > deadline:
            for kind in behind:
                stalled[kind] = f"not {hours} h of samples after {timeout_s} s"
            return
        time.sleep(0.5)


def board_problems(rec: Recorder, board: Board, kind: str, code: int | None,
                   board_now_ms: int) -> list[str]:
    """Everything that says this board did not get through the day with nothing lost
    (``board_now_ms``: the boards' clock now, for samples stamped in the future)."""
    console = board.console()
    tail = console[-1000:]
    at = console.find("Traceback")
    first = f"first trouble on the console:\n{console[at:at + 800]}" if at >= 0 else ""
    if code != 0:
        return [f"exit code {code}; {first}\n... console ends:\n{tail}"]
    problems = [f"{bad!r} on the console" for bad in ("MemoryError", "out of memory")
                if bad in console] + ([first] if first else [])
    taken = re.findall(r"(\d+) samples taken", console)
    if not taken:
        return [*problems, f"no summary at the end:\n{tail}"]
    invalid: list[str] = []
    seen: dict[int, bytes] = {}
    fields: set[str] = set()
    unique: set[int] = set()
    counted: set[int] = set()
    total = 0  # samples in the distinct messages: a sample sent twice counts twice
    boots: set[int] = set()
    received = rec.on(board.device_id, "telemetry")
    # Kept beside the console, for a look at what went wrong.
    (board.folder / "telemetry.jsonl").write_bytes(b"\n".join(m.payload for m in received))
    for m in received:
        invalid += telemetry_problems(m.payload, {kind}, 50, board_now_ms)
        doc = json.loads(m.payload)
        if seen.setdefault(doc["seq"], m.payload) != m.payload:
            problems.append(f"seq {doc['seq']} redelivered with other content")
        boots.add(doc["boot"])
        if doc["seq"] not in counted:
            counted.add(doc["seq"])
            total += len(doc["samples"])
        for s in doc["samples"]:
            unique.add(s["t"])
            fields.update(s)
    if boots - {1}:
        problems.append(f"boots {sorted(boots)}: the board restarted")
    if invalid:
        problems.append(f"{len(invalid)} problems in telemetry, e.g. {invalid[:3]}")
    # Every sample taken has arrived, or waits in flash for the next start; none both.
    flash = flash_samples(board.folder)
    if len(unique | flash) != int(taken[-1]) or unique & flash or total != len(unique):
        problems.append(f"{taken[-1]} samples taken: {len(unique)} distinct ones arrived "
                        f"({total} in all), {len(flash)} in flash "
                        f"({len(unique & flash)} of them arrived as well)")
    if sorted(seen) != list(range(len(seen))):
        missing = sorted(set(range(max(seen, default=-1) + 1)) - set(seen))
        problems.append(f"seq gaps: {missing[:10]}")
    if unique and max(unique) - min(unique) < DAY_MS - 2 * SAMPLE_S * 1000:
        problems.append(f"only {(max(unique) - min(unique)) / 3_600_000:.1f} h of samples")
    if fields - {"t"} != DRIVER_FIELDS[kind]:
        problems.append(f"fields {sorted(fields - {'t'})}, not {sorted(DRIVER_FIELDS[kind])}")
    # The outage (60 samples, more than the RAM buffer holds: the firmware sizes it from the
    # free heap) went through the flash: the reconnect found them all buffered.
    buffered = [int(x) for x in re.findall(r"mqtt connected .*\(buffered (\d+)", console)]
    if len(buffered) < 2 or max(buffered[1:]) < OUTAGE_MS // (SAMPLE_S * 1000) - 5:
        problems.append(f"buffered at the reconnects: {buffered}")
    health = rec.docs(board.device_id, "health")
    heap = [h["heap_free"] for h in health]
    if len(heap) < 100 or min(heap) <= 1000:  # a report every 10 minutes of a day: 144
        problems.append(f"{len(heap)} health reports, least heap free {min(heap, default=0)}")
    faults = {h["faults"] for h in health} - {""}
    if faults or any("config_error" in h for h in health):
        problems.append(f"faults {faults} or config errors in health")
    return problems


def test_a_day_of_every_kinds_drivers_with_a_30_minute_outage(
        tmp_path: Path, boards: Callable[..., Board]) -> None:
    b = Broker(tmp_path / "soak", persistent=True)
    b.start()
    # A persistent session: the subscriber misses nothing while the broker is down.
    rec = Recorder(b.port, client_id="fw-drivers-soak-spy", persistent=True)
    # Samples in the past even though a sped-up start takes board hours, too.
    start_ms = int(time.time() * 1000) - DAY_MS - 3 * 3_600_000
    fleet: dict[str, Board] = {}
    for kind, sensors in DRIVER_SENSORS.items():
        fleet[kind] = boards(f"{kind}-soak", kind, b.port, sensors=sensors,
                             sample_interval_s=SAMPLE_S, publish_interval_s=120,
                             health_interval_s=600, max_flash_bytes=262144,
                             host_clock={"scale": SCALE, "start_ms": start_ms})
        fleet[kind].heap = HEAP
    codes: dict[str, int | None] = {}
    stalled: dict[str, str] = {}
    started = time.monotonic()
    try:
        for board in fleet.values():
            board.start()
        wait_for_hours(rec, fleet, 8, 180, stalled)
        b.stop()
        time.sleep(OUTAGE_MS / SCALE / 1000 + 0.5)  # 30 minutes of board time, and a bit
        b.start()
        wait_for_hours(rec, fleet, 24, 360, stalled)
        for board in fleet.values():
            if board.process is not None and board.process.poll() is None:
                hostboard.stop(board.process)  # keeps what is unsent, says so
        for kind, board in fleet.items():
            assert board.process is not None
            try:
                codes[kind] = board.process.wait(30)
            except subprocess.TimeoutExpired:
                codes[kind] = None
        # The offline status comes after a board's last telemetry: then all of it is here.
        clean = [b.device_id for k, b in fleet.items() if codes[k] == 0]
        deadline = time.monotonic() + 30  # past it, the checks report what is missing
        while time.monotonic() < deadline and not all(
                statuses(rec, d)[-1:] == [{"state": "offline"}] for d in clean):
            time.sleep(0.2)
    finally:
        for board in fleet.values():
            board.kill()
        rec.close()
        b.stop()
    board_now_ms = start_ms + int((time.monotonic() - started) * SCALE * 1000)
    problems = {kind: ([stalled[kind]] if kind in stalled else [])
                + board_problems(rec, board, kind, codes.get(kind), board_now_ms)
                for kind, board in fleet.items()}
    failed = {kind: p for kind, p in problems.items() if p}
    assert not failed, f"{len(failed)} of {len(fleet)} kinds failed:\n" + "\n".join(
        f"--- {kind}: " + "\n    ".join(p) for kind, p in failed.items())
