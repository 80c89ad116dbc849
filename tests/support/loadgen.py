"""A multi-process MQTT load generator that knows exactly which samples the broker accepted.

One Python QoS 1 publisher tops out near 10k messages/s on two cores, so the load is spread
over several processes, each owning a disjoint set of devices. Every message is valid
telemetry for a registered device with a unique (device_id, boot, seq); its 1-5 samples, their
timestamps and values are a pure function of (device, boot, seq), so the samples a message
carried can be recomputed from its key alone (``message_samples``) and compared with
InfluxDB afterwards.

A sample counts as published once the broker has acknowledged its message (PUBACK). The
publishers survive a broker restart: paho reconnects and sends every message not yet
acknowledged again, byte for byte (same boot and seq, DUP set), so a message the broker had
already taken before it went down reaches the gateway twice: a real duplicate, as a board
would cause.

    load = Load(host, port, plan_devices(200), rate=3000, duration_s=20, publishers=3)
    load.start()
    ...  # inject faults meanwhile
    result = load.wait()
    result.expected()  # {measurement: {(device_id, t): value}} of every acknowledged sample
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# kind -> (measurement, the field whose value the check compares, the other fields sent)
KINDS: dict[str, tuple[str, str, dict[str, float]]] = {
    "air": ("air_quality", "pm25", {"temperature": 18.5, "humidity": 60.0}),
    "noise": ("noise", "laeq", {}),
}
# Milliseconds of timeline each message owns: room for its (at most 5) samples, so that
# timestamps never repeat within a device.
_MS_PER_MESSAGE = 5
_TICK_S = 0.005


@dataclass(frozen=True)
class Device:
    device_id: str
    kind: str
    index: int


def plan_devices(count: int) -> list[Device]:
    """`count` devices, alternating air and noise boards."""
    kinds = list(KINDS)
    return [
        Device(f"{kinds[i % len(kinds)]}-load-{i:04d}", kinds[i % len(kinds)], i)
        for i in range(count)
    ]


def registry_csv(devices: list[Device]) -> str:
    districts = ("north", "centre", "south")
    rows = ["device_id,kind,district,site,lat,lon,interval_s"]
    rows += [f"{d.device_id},{d.kind},{districts[d.index % 3]},,,,60" for d in devices]
    return "\n".join(rows) + "\n"


def message_samples(device: Device, seq: int, base_ms: int) -> list[tuple[int, float]]:
    """(t, value of the checked field) of each sample in message `seq` of this device."""
    count = 1 + (seq * 7 + device.index * 3) % 5
    samples = []
    for i in range(count):
        slot = seq * _MS_PER_MESSAGE + i
        # Inside each field's valid range; exact in JSON and in InfluxDB's float64.
        value = (slot % 19_997) / 10 if device.kind == "air" else (slot % 1_600) / 10
        samples.append((base_ms + slot, value))
    return samples


def message_payload(device: Device, boot: int, seq: int, base_ms: int) -> bytes:
    _measurement, checked, others = KINDS[device.kind]
    samples: list[dict[str, Any]] = [
        {"t": t, checked: value, **others} for t, value in message_samples(device, seq, base_ms)
    ]
    return json.dumps({"v": 1, "boot": boot, "seq": seq, "samples": samples}).encode()


@dataclass(frozen=True)
class PublisherSpec:
    host: str
    port: int
    client_id: str
    topic_prefix: str
    devices: list[Device]
    boot: int
    base_ms: int
    rate: float  # messages per second from this process
    duration_s: float
    settle_s: float  # after the load: how long to wait for the last PUBACKs


@dataclass
class PublisherReport:
    client_id: str
    attempted: int = 0
    acked: dict[str, list[int]] = field(default_factory=dict)  # device_id -> seqs
    unacked: dict[str, list[int]] = field(default_factory=dict)
    reason_codes: Counter[int] = field(default_factory=Counter)
    connects: int = 0
    disconnects: int = 0
    load_s: float = 0.0
    error: str | None = None


def _publisher_main(spec: PublisherSpec, conn: multiprocessing.connection.Connection) -> None:
    report = PublisherReport(spec.client_id)
    try:
        _publish(spec, conn, report)
    except Exception as exc:  # reported to the parent, which fails the test with it
        report.error = f"{type(exc).__name__}: {exc}"
    conn.send(report)
    conn.close()


def _publish(
    spec: PublisherSpec, conn: multiprocessing.connection.Connection, report: PublisherReport
) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=spec.client_id, protocol=mqtt.MQTTv5
    )
    # Many messages in flight, as a busy broker link has; unlimited queue while disconnected.
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=2)

    def on_connect(
        c: mqtt.Client, u: Any, f: mqtt.ConnectFlags, rc: ReasonCode, p: Properties | None
    ) -> None:
        if not rc.is_failure:
            report.connects += 1

    def on_disconnect(
        c: mqtt.Client, u: Any, f: mqtt.DisconnectFlags, rc: ReasonCode, p: Properties | None
    ) -> None:
        report.disconnects += 1

    def on_publish(
        c: mqtt.Client, u: Any, mid: int, rc: ReasonCode, p: Properties | None
    ) -> None:
        # Runs under paho's message lock: only count here. A code other than 0 (e.g. 16, "no
        # matching subscribers": the broker dropped it) is reported, and the tests require none.
        report.reason_codes[rc.value] += 1

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.connect(spec.host, spec.port, keepalive=10)
    client.loop_start()
    deadline = time.monotonic() + 30
    while report.connects == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.client_id}: no connection to {spec.host}:{spec.port}")
        time.sleep(0.01)
    conn.send("ready")
    conn.recv()  # "go": every publisher starts at once

    sent: list[tuple[Device, int, mqtt.MQTTMessageInfo]] = []
    next_seq = dict.fromkeys((d.device_id for d in spec.devices), 0)
    retry: list[tuple[Device, int]] = []
    start = time.monotonic()
    stop = start + spec.duration_s
    count = 0
    while (now := time.monotonic()) < stop:
        due = int((now - start) * spec.rate) - count
        for _ in range(max(0, due)):
            if retry:
                device, seq = retry.pop()
            else:
                device = spec.devices[count % len(spec.devices)]
                seq = next_seq[device.device_id]
                next_seq[device.device_id] = seq + 1
            info = client.publish(
                f"{spec.topic_prefix}/{device.device_id}/telemetry",
                message_payload(device, spec.boot, seq, spec.base_ms),
                qos=1,
            )
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                retry.append((device, seq))  # its packet id is still in use: next tick
            else:
                sent.append((device, seq, info))
            count += 1
        time.sleep(_TICK_S)
    report.load_s = time.monotonic() - start
    for device, seq in retry:  # rare; published now, awaited below
        sent.append((device, seq, client.publish(
            f"{spec.topic_prefix}/{device.device_id}/telemetry",
            message_payload(device, spec.boot, seq, spec.base_ms), qos=1)))
    report.attempted = len(sent)

    settle = time.monotonic() + spec.settle_s
    while time.monotonic() < settle and not all(_acked(info) for _, _, info in sent):
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    for device, seq, info in sent:
        target = report.acked if _acked(info) else report.unacked
        target.setdefault(device.device_id, []).append(seq)


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    """PUBACK received. Not info.is_published(): a message published while the broker was
    away keeps rc NO_CONN (and is_published() raises) even after paho sent it on reconnect
    and the broker acknowledged it."""
    return bool(info._published)


@dataclass
class LoadResult:
    devices: list[Device]
    base_ms: int
    reports: list[PublisherReport]

    @property
    def attempted(self) -> int:
        return sum(r.attempted for r in self.reports)

    @property
    def acked_messages(self) -> int:
        return sum(len(seqs) for r in self.reports for seqs in r.acked.values())

    @property
    def unacked_messages(self) -> int:
        return sum(len(seqs) for r in self.reports for seqs in r.unacked.values())

    @property
    def reason_codes(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for r in self.reports:
            total.update(r.reason_codes)
        return total

    @property
    def reconnects(self) -> int:
        return sum(max(0, r.connects - 1) for r in self.reports)

    @property
    def rate(self) -> float:
        """Messages per second actually offered (each publisher's own load time)."""
        return sum(r.attempted / r.load_s for r in self.reports if r.load_s > 0)

    def expected(self) -> dict[str, dict[tuple[str, int], float]]:
        """measurement -> {(device_id, t): value} of every sample in an acknowledged message."""
        by_id = {d.device_id: d for d in self.devices}
        out: dict[str, dict[tuple[str, int], float]] = {m: {} for m, _, _ in KINDS.values()}
        for report in self.reports:
            for device_id, seqs in report.acked.items():
                device = by_id[device_id]
                points = out[KINDS[device.kind][0]]
                for seq in seqs:
                    for t, value in message_samples(device, seq, self.base_ms):
                        points[(device_id, t)] = value
        return out

    def summary(self) -> str:
        return (
            f"{self.attempted} messages offered at {self.rate:.0f} msg/s, "
            f"{self.acked_messages} acknowledged, {self.unacked_messages} not, "
            f"PUBACK reason codes {dict(self.reason_codes)}, {self.reconnects} reconnects"
        )


class Load:
    """`publishers` processes publishing `rate` messages/s in total for `duration_s`."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[Device],
        *,
        rate: float,
        duration_s: float,
        publishers: int = 3,
        topic_prefix: str = "city",
        boot: int = 1,
        base_ms: int | None = None,
        settle_s: float = 120.0,
        name: str = "loadgen",
    ) -> None:
        self.devices = devices
        # An hour ago: inside the gateway's accepted window, and no clash with "now" points.
        self.base_ms = base_ms if base_ms is not None else time.time_ns() // 1_000_000 - 3_600_000
        self.duration_s = duration_s
        self.settle_s = settle_s
        self.specs = [
            PublisherSpec(
                host, port, f"{name}-{k}", topic_prefix, devices[k::publishers], boot,
                self.base_ms, rate / publishers, duration_s, settle_s,
            )
            for k in range(publishers)
        ]
        # spawn: no copy of the test process's threads and sockets in the publishers.
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[tuple[Any, multiprocessing.connection.Connection]] = []
        self.started_at: float | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the publishers, wait until each is connected, then let them all go."""
        for spec in self.specs:
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_publisher_main, args=(spec, child), daemon=True)
            proc.start()
            child.close()
            self._procs.append((proc, parent))
        for proc, conn in self._procs:
            if not conn.poll(timeout_s):
                raise RuntimeError(f"publisher {proc.name} did not connect in {timeout_s} s")
            message = conn.recv()
            if message != "ready":
                raise RuntimeError(f"publisher failed to start: {message}")
        for _proc, conn in self._procs:
            conn.send("go")
        self.started_at = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def wait(self) -> LoadResult:
        """Wait for the load to end and every PUBACK (up to settle_s); the publishers' reports."""
        reports: list[PublisherReport] = []
        timeout = self.duration_s + self.settle_s + 60
        for proc, conn in self._procs:
            if not conn.poll(max(1.0, timeout - self.elapsed())):
                raise RuntimeError(f"publisher {proc.name} did not report in {timeout} s")
            report: PublisherReport = conn.recv()
            if report.error:
                raise RuntimeError(f"publisher {report.client_id} failed: {report.error}")
            reports.append(report)
            proc.join(10)
        self._procs.clear()
        return LoadResult(self.devices, self.base_ms, reports)

    def close(self) -> None:
        """Stop publishers still running (a failed test)."""
        for proc, conn in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            conn.close()
        self._procs.clear()
