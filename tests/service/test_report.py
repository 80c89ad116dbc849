"""A worker's report to its parent, and the parent's totals ([service] workers)."""

from __future__ import annotations

import json

from urbanpulse.contract.messages import Reason
from urbanpulse.service.progress import LatencySnapshot
from urbanpulse.service.report import SEEN_PER_DATAGRAM, WorkerReport
from urbanpulse.service.stats import Stats
from urbanpulse.service.status import GatewayStatus


def test_the_parents_counters_add_the_workers_and_never_go_back() -> None:
    parent, worker = Stats(), Stats()
    parent.received()
    for _ in range(5):
        worker.received()
    worker.rejected(Reason.OUT_OF_RANGE, whole=False)
    parent.set_external("w0", worker.snapshot())
    totals = parent.snapshot()
    assert totals["received"] == 6 and totals["rejected_out_of_range"] == 1
    # The worker died and starts counting from 0: what it had counted stays in the totals.
    parent.retire_external("w0")
    parent.set_external("w0", Stats().snapshot())
    assert parent.snapshot()["received"] == 6
    assert isinstance(parent.snapshot()["write_seconds_total"], float)


def test_a_report_names_every_board_heard_in_datagrams_of_bounded_size() -> None:
    report = WorkerReport()
    boards = [f"air-{i:05d}" for i in range(SEEN_PER_DATAGRAM * 2 + 5)]
    for board in boards + boards[:10]:
        report.seen(board)
    report.late("air-00001", 2000, 3000)
    report.late("air-00001", 1000, 2500)
    status = Stats().snapshot()
    texts = report.take(_status(status))
    parts = [json.loads(t) for t in texts]
    assert len(parts) == 3 and all(len(t) < 64 * 1024 for t in texts)
    assert sorted(b for p in parts for b in p["seen"]) == sorted(boards)
    assert parts[0]["late"] == {"air-00001": [1000, 3000]}
    assert parts[0]["counters"] == status
    # Taken: the next report starts empty.
    assert json.loads(report.take(_status(status))[0])["seen"] == []


def _status(counters: dict[str, int | float]) -> GatewayStatus:
    return GatewayStatus(counters=counters, pending_points=0, spool={}, connected=True,
                         uptime_s=1.0, write_in_flight_s=0.0,
                         write_latency=LatencySnapshot((), 0, 0.0, None), devices=(),
                         states={})
