"""Prometheus ``/metrics`` for the gateway, read from its live state at scrape time.

A custom collector (no metric objects updated on the hot path): each scrape reads
``Stats.snapshot()``, the batcher's pending points and spool depth, the write timings, the
broker connection, the registry and the liveness states. ``[metrics] host``/``port``
(default 127.0.0.1:9464; port 0 = off). ``urbanpulse gateway status`` reads the same page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from urbanpulse.contract.messages import Reason

from .stats import COUNTERS, REJECTION_TOTALS
from .status import GatewayStatus

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


log = logging.getLogger("urbanpulse.metrics")

PREFIX = "urbanpulse"

class GatewayCollector(Collector):
    def __init__(self, status: Callable[[], GatewayStatus]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status()
        snap = status.counters
        for spec in (*COUNTERS, *REJECTION_TOTALS):
            yield CounterMetricFamily(f"{PREFIX}_{spec.metric}", spec.help, value=snap[spec.key])
        rejected = CounterMetricFamily(
            f"{PREFIX}_rejected", "rejections by reason (messages and samples)", labels=["reason"]
        )
        for reason in Reason:
            rejected.add_metric([reason.value], snap.get(f"rejected_{reason.value}", 0))
        yield rejected

        latency = status.write_latency
        yield HistogramMetricFamily(
            f"{PREFIX}_write_duration_seconds",
            "duration of successful InfluxDB writes",
            buckets=[(_le(bound), float(n)) for bound, n in latency.buckets],
            sum_value=latency.sum_s,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_write_in_flight_seconds",
            "how long the InfluxDB write in progress has been running (0: none)",
            value=status.write_in_flight_s,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_pending_points",
            "points waiting to be written",
            value=status.pending_points,
        )
        for key, value in status.spool.items():
            name = key.replace("_age_s", "_age_seconds")
            yield GaugeMetricFamily(f"{PREFIX}_{name}", f"spool: {key}", value=value)
        yield GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected",
            "1 while connected and subscribed to the broker",
            value=1 if status.connected else 0,
        )
        yield GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "since start", value=status.uptime_s)

        yield GaugeMetricFamily(
            f"{PREFIX}_registry_devices", "devices in the registry", value=len(status.devices)
        )
        states = status.states
        by_state = GaugeMetricFamily(
            f"{PREFIX}_devices", "registered devices by liveness state", labels=["state"]
        )
        for state in ("online", "offline", "unknown"):
            count = sum(1 for s in states.values() if (s or "unknown") == state)
            by_state.add_metric([state], count)
        yield by_state
        online = GaugeMetricFamily(
            f"{PREFIX}_device_online",
            "1 online, 0 offline, per device (undecided devices are left out)",
            labels=["device_id", "district", "kind"],
        )
        for device in status.devices:
            decided = states.get(device.device_id)
            if decided is not None:
                online.add_metric(
                    [device.device_id, device.district, device.kind], int(decided == "online")
                )
        yield online


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        port: int = self.server.server_address[1]
        return port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_metrics(
    status: Callable[[], GatewayStatus], host: str, port: int
) -> MetricsServer | None:
    """Serve /metrics; None when off (port 0) or when the port cannot be bound (logged:
    the gateway's data path must not depend on its monitoring)."""
    if port == 0:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(status))
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        log.error(
            "metrics not served: cannot listen on %s:%d: %s (set [metrics] port, 0 = off)",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return MetricsServer(server, thread)


# -- `urbanpulse gateway status` -------------------------------------------------------------
class MetricsUnreachable(Exception):
    """The gateway's /metrics page could not be read."""


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] from a /metrics page."""
    import urllib3
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = urllib3.request("GET", url, timeout=timeout_s, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        text = str(exc)
        if text.startswith("<"):  # "<HTTPConnection object at ...>: Failed to ..."
            text = text.split(">: ", 1)[-1]
        raise MetricsUnreachable(f"cannot reach the gateway's metrics at {url}: {text}") from None
    if response.status != 200:
        raise MetricsUnreachable(f"{url} answered HTTP {response.status}, not metrics")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.data.decode("utf-8", "replace")):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def summary(url: str, samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """A human summary of a scrape, one topic per line."""

    def value(name: str, default: float = 0.0) -> float:
        found = samples.get(f"{PREFIX}_{name}")
        return found[0][1] if found else default

    def n(name: str) -> int:
        return int(value(name))

    rejected = {
        labels["reason"]: int(v) for labels, v in samples.get(f"{PREFIX}_rejected_total", []) if v
    }
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
    states = {labels["state"]: int(v) for labels, v in samples.get(f"{PREFIX}_devices", [])}
    offline = sorted(
        labels["device_id"]
        for labels, v in samples.get(f"{PREFIX}_device_online", [])
        if v == 0
    )
    writes = value("write_duration_seconds_count")
    latency = value("write_duration_seconds_sum") / writes * 1000 if writes else 0.0
    lines = [
        f"UrbanPulse gateway at {url}",
        f"  broker    {'connected' if n('mqtt_connected') else 'NOT CONNECTED'}",
        f"  uptime    {_duration(value('uptime_seconds'))}",
        f"  messages  received {n('messages_received_total')}, "
        f"accepted {n('messages_accepted_total')}, "
        f"duplicates {n('messages_duplicate_total')}, "
        f"rejected {sum(rejected.values())}" + (f" ({reasons})" if reasons else ""),
        f"  points    stored {n('points_stored_total')}, pending {n('pending_points')}, "
        f"refused {n('points_refused_total')}, dead-letter {n('points_dead_letter_total')}, "
        f"write errors {n('write_errors_total')}",
        f"  writes    {int(writes)} stored batches, average {latency:.0f} ms"
        + (f", one running for {value('write_in_flight_seconds'):.0f} s"
           if value("write_in_flight_seconds") >= 1 else ""),
        f"  spool     {n('spool_points')} points, oldest {value('spool_oldest_age_seconds'):.0f} s",
        f"  devices   {n('registry_devices')} registered: {states.get('online', 0)} online, "
        f"{states.get('offline', 0)} offline, {states.get('unknown', 0)} not seen yet",
    ]
    if offline:
        lines.append(f"  offline   {', '.join(offline)}")
    return "\n".join(lines)
