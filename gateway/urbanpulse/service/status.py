"""One consistent snapshot of the running gateway, for everything that reports on it.

``/metrics``, the ``gateway_stats`` point and the line ``systemctl status`` shows all read a
``GatewayStatus`` taken by ``Gateway.snapshot()``; none of them reaches into the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.contract.vocabulary import GATEWAY_STATS_MEASUREMENT
from urbanpulse.registry.devices import Device

from .progress import LatencySnapshot


@dataclass(frozen=True)
class GatewayStatus:
    counters: dict[str, int | float]  # Stats.snapshot()
    pending_points: int  # queued for the next write
    spool: dict[str, int | float]  # Batcher.spool_status(): spool_points, spool_records, ...
    connected: bool  # to the broker and subscribed
    uptime_s: float
    write_in_flight_s: float  # how long the write in progress has run (0: none)
    write_latency: LatencySnapshot
    devices: tuple[Device, ...]  # the registry in force
    states: dict[str, str | None]  # device id -> online / offline / None (undecided)

    @property
    def online(self) -> int:
        return sum(1 for state in self.states.values() if state == "online")

    def line(self) -> str:
        """One line for `systemctl status`."""
        broker = "connected" if self.connected else "broker unreachable"
        return (
            f"{broker}; {self.online}/{len(self.states)} devices online; "
            f"{self.counters['stored_points']} points stored, {self.pending_points} pending, "
            f"{self.spool['spool_points']} spooled"
        )

    def stats_fields(self) -> dict[str, int | float | bool | str]:
        """The fields of the gateway's own ``gateway_stats`` point."""
        fields: dict[str, int | float | bool | str] = dict(self.counters)
        fields["pending_points"] = self.pending_points
        fields.update(self.spool)
        fields["uptime_s"] = round(self.uptime_s, 1)
        fields["mqtt_connected"] = self.connected
        return fields

    def stats_point(self, gateway: str, now_ms: int) -> str:
        """The ``gateway_stats`` point of ``gateway`` (its MQTT client id)."""
        return encode_point(GATEWAY_STATS_MEASUREMENT, {"gateway": gateway}, self.stats_fields(),
                            now_ms)
