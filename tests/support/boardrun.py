"""Boards run as they would live (started again after a reboot or a deep-sleep wake), and
talked to as an operator would: commands on `city/{id}/cmd`, answers on `cmd/ack`."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from support.hostboards import Board, Recorder
from support.waiting import wait_until
from urbanpulse.devtools.fleet import EXIT_DEEPSLEEP, EXIT_RESET


class Supervisor:
    """Runs a board and starts it again whenever it reboots or wakes from deep sleep."""

    def __init__(self, board: Board, max_starts: int = 50, watchdog: bool = False) -> None:
        self.board = board
        # Also start it again after the host watchdog killed it (SIGKILL, firmware/host/hostwdt.py).
        self.watchdog = watchdog
        self.max_starts = max_starts
        self.starts = 0
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.starts < self.max_starts:
            self.board.start(write_config=self.starts == 0)
            self.starts += 1
            assert self.board.process is not None
            code = self.board.process.wait()
            self.codes.append(code)
            if code not in (EXIT_RESET, EXIT_DEEPSLEEP) and not (
                    self.watchdog and code == -signal.SIGKILL and not self._stop.is_set()):
                return

    def stop(self) -> None:
        self._stop.set()
        self.board.kill()
        self._thread.join(10)


def acks(rec: Recorder, device_id: str) -> dict[str | None, dict[str, Any]]:
    return {d["id"]: d for d in rec.docs(device_id, "cmd/ack") if isinstance(d, dict)}


def command(rec: Recorder, device_id: str, payload: dict[str, Any] | str) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    rec.client.publish(f"city/{device_id}/cmd", text, qos=1).wait_for_publish(5)


def ack_of(rec: Recorder, device_id: str, cid: str, timeout_s: float = 20) -> dict[str, Any]:
    wait_until(lambda: cid in acks(rec, device_id), timeout_s, f"the ack of {cid}")
    return acks(rec, device_id)[cid]


def samples(rec: Recorder, device_id: str) -> list[dict[str, Any]]:
    return [s for d in rec.docs(device_id, "telemetry") for s in d["samples"]]


def assert_clean(console: str) -> None:
    for bad in ("Traceback", "MemoryError", "out of memory"):
        at = console.find(bad)
        # The start and the first problem (a board in trouble can log thousands of lines).
        assert at < 0, f"{bad!r} on the console:\n{console[:1500]}\n...\n{console[at:at + 3000]}"
