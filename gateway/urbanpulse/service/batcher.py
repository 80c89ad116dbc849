"""Points to InfluxDB in batches, each message acknowledged only once stored (or spooled).

``Batcher`` collects the points of each message (from the channels: telemetry.py, health.py,
liveness.py) with the acknowledgement the message waits for, writes them in batches (by size,
or after at most ``max_delay_s``), and only then releases the acknowledgements, in arrival
order.

When InfluxDB cannot take a batch for a reason that can pass (down, slow, 5xx, 401/403/404),
the batch goes to the on-disk spool and its messages are acknowledged; the spool is replayed,
oldest first, once InfluxDB answers, and while it holds anything new batches queue behind it.
When the spool is full nothing more is acknowledged: the batch is held and retried, and the
broker keeps the rest (at-least-once delivery). A batch InfluxDB refuses as such (400, 413,
422) is split in halves until the points it refuses are found; those go to the dead-letter
file, the others are stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from urbanpulse.influx.deadletter import DeadLetterFile, influx_reason, split_refused
from urbanpulse.influx.writer import PointWriter, WriteError

from .logs import RateLimitedLog
from .spool import Spool, SpoolDepth, SpoolError, SpoolFull, SpoolRecord
from .stats import Stats

log = logging.getLogger("urbanpulse.pipeline")


# (connection generation, MQTT packet id, QoS) of a message waiting for its points.
AckToken = tuple[int, int, int]


class Batcher:
    """Batches points; acknowledges each message's token once its points are stored, spooled
    or (refused by InfluxDB) set aside in the dead-letter file."""

    def __init__(
        self,
        writer: PointWriter,
        ack: Callable[[list[AckToken]], None],
        stats: Stats,
        *,
        max_points: int = 5000,
        max_delay_s: float = 1.0,
        max_pending_points: int = 100_000,
        spool: Spool | None = None,
        dead_letter: DeadLetterFile | None = None,
        max_retry_delay_s: float = 5.0,
    ) -> None:
        self._writer = writer
        self._ack = ack
        self._stats = stats
        self._held = 0  # points of the batch the full spool refused (held, unacknowledged)
        self._max_points = max_points
        self._max_delay = max_delay_s
        self._max_pending = max(max_pending_points, max_points)
        self._spool = spool
        self._dead_letter = dead_letter
        self._max_retry_delay = max_retry_delay_s
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._tokens: list[AckToken] = []
        self._oldest: float | None = None
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._errors = RateLimitedLog(log, 10.0)
        # InfluxDB's state as last seen: after a retryable failure, the next attempt waits
        # until _next_attempt (backoff), and batches go straight to the spool meanwhile.
        self._influx_ok = True
        self._retry_delay = 0.5
        self._next_attempt = 0.0
        # What is left of the spool's oldest record after a replay failed part-way, with
        # that record: if the spool drops it (damaged on disk), the rest is not for the next.
        self._replay_rest: tuple[SpoolRecord, list[str]] | None = None

    @property
    def thread_died(self) -> bool:
        """Started, and its thread has ended (on stop(), or a bug)."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def pending_points(self) -> int:
        with self._cond:
            return len(self._lines)

    @property
    def held_points(self) -> int:
        """Points of a batch held unacknowledged because the spool is full."""
        return self._held

    def spool_status(self) -> dict[str, int | float]:
        """The spool's depth for metrics and status: points, batches (records), bytes not
        yet replayed, bytes on disk, and the age of the oldest record in seconds (a float,
        0.0 when empty). All zero without a spool."""
        depth = self._spool.depth() if self._spool is not None else SpoolDepth(0, 0, 0, 0, 0.0)
        return {
            "spool_points": depth.points,
            "spool_records": depth.records,
            "spool_bytes": depth.bytes,
            "spool_disk_bytes": depth.disk_bytes,
            "spool_oldest_age_s": round(depth.oldest_age_s, 3),
        }

    def add(self, lines: list[str], token: AckToken | None = None) -> None:
        """Queue points (and the ack they wait for). Blocks while too much is pending,
        which stops us reading from the broker until the store catches up."""
        if not lines and token is None:
            return
        with self._cond:
            while len(self._lines) >= self._max_pending and not self._stopping:
                self._cond.wait(0.5)
            self._queue_locked(lines, token)

    def offer(self, lines: list[str]) -> bool:
        """Queue points unless too much is pending; never blocks (for callers that must
        keep running, such as the gateway's main loop). False when not queued."""
        with self._cond:
            if len(self._lines) >= self._max_pending and not self._stopping:
                return False
            if lines:
                self._queue_locked(lines, None)
            return True

    def _queue_locked(self, lines: list[str], token: AckToken | None) -> None:
        self._lines.extend(lines)
        if token is not None:
            self._tokens.append(token)
        if self._oldest is None:
            self._oldest = time.monotonic()
        if len(self._lines) >= self._max_points:
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 8.0) -> bool:
        """Store what is pending (or spool it when InfluxDB cannot take it), then stop. False
        if that could not be done in time (spool full and InfluxDB down, or a write hanging);
        those messages stay unacknowledged and the broker delivers them again."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        done = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                with self._cond:
                    self._abandon = True
                    self._cond.notify_all()
                self._thread.join(2.0)
                done = False
        elif self._spool is not None:
            self._spool.close()  # never started; otherwise the thread closes it as it ends
        return done

    def _replay_due(self) -> bool:
        return (
            self._spool is not None
            and time.monotonic() >= self._next_attempt
            and len(self._spool) > 0
        )

    def _take(self) -> tuple[list[str], list[AckToken]] | None:
        """The next batch; ([], []) when the spool is due for a replay; None once stopped."""
        with self._cond:
            while True:
                pending = bool(self._lines or self._tokens)
                if pending and (
                    self._stopping
                    or len(self._lines) >= self._max_points
                    or time.monotonic() - (self._oldest or 0.0) >= self._max_delay
                ):
                    lines, tokens = self._lines, self._tokens
                    self._lines, self._tokens, self._oldest = [], [], None
                    self._cond.notify_all()
                    return lines, tokens
                if self._stopping:
                    return None
                if self._replay_due():
                    return [], []
                wait = self._max_delay
                if self._oldest is not None:
                    wait = max(0.0, self._oldest + self._max_delay - time.monotonic())
                if self._spool is not None and len(self._spool) > 0:
                    wait = min(wait, max(0.0, self._next_attempt - time.monotonic()))
                self._cond.wait(wait)
                if self._spool is not None:
                    self._spool.sync_if_due()

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                lines, tokens = batch
                if not self._deliver(lines):
                    return
                if tokens:
                    self._ack(tokens)
        except Exception:
            # Logged where operators look; what is held stays unacknowledged (the broker
            # keeps it) and the watchdog sees the thread gone (Gateway.pipeline_problem).
            log.exception("the batcher stopped on an unexpected error: nothing more is stored")
        finally:
            if self._spool is not None and self._stopping:
                self._spool.close()

    # -- delivery ----------------------------------------------------------------------------
    def _deliver(self, lines: list[str]) -> bool:
        """Store, spool or dead-letter ``lines``, replaying the spool first when due. False
        when abandoned during shutdown (nothing acknowledged)."""
        while True:
            if self._replay_due():
                self._replay()
            spool_holds = self._spool is not None and len(self._spool) > 0
            if not spool_holds and lines:
                if self._stopping and not self._influx_ok and self._spool is not None:
                    pass  # InfluxDB was failing: spool now rather than wait for a timeout
                elif time.monotonic() >= self._next_attempt or self._spool is None:
                    lines = self._write(lines)
            if not lines:
                self._held = 0
                return True
            # InfluxDB cannot take them now, or the spool holds older batches: behind those.
            if self._spool is not None:
                try:
                    self._spool.append(lines)
                except SpoolFull as exc:
                    self._held = len(lines)
                    self._errors.log(
                        "full",
                        logging.ERROR,
                        f"SPOOL FULL: {len(lines)} points held unacknowledged (the broker keeps "
                        f"the rest) until InfluxDB takes the spool; {self._depth_text()}: {exc}",
                    )
                except SpoolError as exc:
                    self._errors.log(
                        "spool",
                        logging.ERROR,
                        f"cannot spool: {len(lines)} points held unacknowledged: {exc}",
                    )
                else:
                    self._held = 0
                    self._stats.spooled(len(lines))
                    self._errors.log(
                        "spooled",
                        logging.WARNING,
                        f"InfluxDB unavailable: {len(lines)} points spooled and acknowledged; "
                        f"{self._depth_text()}",
                    )
                    return True
            # Hold them (and their acks): wait, then try again.
            with self._cond:
                if self._abandon:
                    return False
                self._cond.wait(max(0.05, self._next_attempt - time.monotonic()))
                if self._abandon:
                    return False

    def _replay(self) -> None:
        """Write spooled records oldest first, for up to about a second (so that new batches
        are taken, and acknowledged, in between); stop at the first retryable failure."""
        assert self._spool is not None
        until = time.monotonic() + max(self._max_delay, 0.5)
        while time.monotonic() < until:
            try:
                record = self._spool.peek()
            except OSError as exc:
                self._errors.log("spool", logging.ERROR, f"cannot read the spool: {exc}")
                self._backoff()
                return
            if record is None:
                log.info("spool replayed: InfluxDB has every spooled point")
                return
            lines = record.lines
            if self._replay_rest is not None and self._replay_rest[0] == record:
                lines = self._replay_rest[1]
            rest = self._write(lines, replay=True)
            if rest:
                # Not (all) stored: the record stays; the next attempt resumes with what is
                # left, so points already stored or set aside are not sent again.
                self._replay_rest = (record, rest)
                return
            self._replay_rest = None
            self._spool.pop(record)
            self._stats.replayed(record.points)

    def _depth_text(self) -> str:
        status = self.spool_status()
        return (
            f"spool holds {status['spool_points']} points in {status['spool_records']} batches, "
            f"{status['spool_disk_bytes']} bytes on disk, oldest "
            f"{status['spool_oldest_age_s']:.0f} s old"
        )

    def _backoff(self) -> None:
        self._influx_ok = False
        self._next_attempt = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._max_retry_delay)

    def _write(self, lines: list[str], *, replay: bool = False) -> list[str]:
        """Write, splitting a refused batch in halves until each refused point is found and
        set aside. Returns the points not stored because InfluxDB is unavailable ([] when
        everything was stored or set aside)."""
        chunks = deque([lines])
        while chunks:
            chunk = chunks.popleft()
            started = time.monotonic()
            try:
                self._writer.write(chunk)
            except WriteError as exc:
                self._stats.write(time.monotonic() - started, failed=True)
                if exc.retryable:
                    self._backoff()
                    self._errors.log(
                        "retry",
                        logging.WARNING,
                        f"write of {len(chunk)} points failed, retrying in "
                        f"{self._next_attempt - time.monotonic():.1f} s"
                        f"{' (replaying the spool)' if replay else ''}: {exc}",
                    )
                    return [line for c in (chunk, *chunks) for line in c]
                parts = split_refused(chunk, influx_reason(str(exc))) if len(chunk) > 1 else None
                if parts is None:
                    self._set_aside(chunk, exc)
                else:
                    # The refusal may concern some points among many: find them.
                    self._errors.log(
                        "split",
                        logging.WARNING,
                        f"InfluxDB refused a write of {len(chunk)} points, splitting it to "
                        f"find the refused ones: {exc}",
                    )
                    chunks.extendleft(reversed(parts))
                continue
            self._stats.write(time.monotonic() - started, stored=len(chunk))
            if not self._influx_ok:
                log.info("InfluxDB answers again")
            self._influx_ok = True
            self._retry_delay = 0.5
            self._next_attempt = 0.0
        return []

    def _set_aside(self, points: list[str], exc: WriteError) -> None:
        reason = influx_reason(str(exc))
        where = "the log (no dead-letter file)"
        if self._dead_letter is not None:
            if self._dead_letter.add(points, exc.status, reason):
                where = str(self._dead_letter.path)
        else:
            log.error("refused points:\n%s", "\n".join(points))
        self._stats.dead_lettered(len(points))
        self._errors.log(
            "dead",
            logging.ERROR,
            f"InfluxDB refused {len(points)} point{'s' if len(points) > 1 else ''} "
            f"(HTTP {exc.status}), set aside in {where}: {reason}",
        )
