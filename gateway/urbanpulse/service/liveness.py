"""Which boards are online: from their retained status, their last will, and a timeout.

- ``{prefix}/{id}/status`` ``{"state":"online",...}`` (retained): online, reason ``status``.
- ``{"state":"offline"}``, which the broker publishes as the board's last will when its
  connection drops: offline, reason ``will``.
- A telemetry or health message with something valid in it: the board is alive; online,
  reason ``telemetry`` if it was not online.
- Nothing seen for ``timeout_factor`` x the registry's ``interval_s`` (a board that hangs
  with its TCP connection open, or whose will never arrives): offline, reason ``timeout``.
  A registered device never seen since the gateway started goes offline the same way.

Every change writes a ``device_status`` point (tags from the registry; fields ``online``,
``state``, ``reason``) and logs one line, e.g. ``device=X offline (timeout 180 s)``. Every
``heartbeat_s`` the state of every device is written again, so that a dashboard's ``last()``
over a short range sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pydantic_core

from urbanpulse.contract.lineprotocol import encode_fields, encode_point
from urbanpulse.contract.messages import MessageRejected, Reason
from urbanpulse.contract.vocabulary import (
    DEVICE_INFO_MEASUREMENT,
    DEVICE_STATUS_MEASUREMENT,
    LIVENESS_STATES,
    MAX_STATUS_BYTES,
)
from urbanpulse.registry.devices import RegisteredDevice, Registry

from .channels import DeviceChannel

log = logging.getLogger("urbanpulse.liveness")


def parse_status(payload: bytes) -> str | None:
    """``online`` or ``offline``; None for an empty payload (a retained status cleared)."""
    if not payload:
        return None
    if len(payload) > MAX_STATUS_BYTES:
        raise MessageRejected(Reason.TOO_LARGE, f"{len(payload)} bytes, limit {MAX_STATUS_BYTES}")
    try:
        raw = pydantic_core.from_json(payload)
    except ValueError as exc:
        raise MessageRejected(Reason.NOT_JSON, str(exc)) from None
    if not isinstance(raw, dict):
        raise MessageRejected(Reason.BAD_ENVELOPE, "payload is not a JSON object")
    state = raw.get("state")
    if state not in LIVENESS_STATES:
        raise MessageRejected(
            Reason.BAD_ENVELOPE, f"state={state!r}: must be one of {', '.join(LIVENESS_STATES)}"
        )
    return str(state)


@dataclass
class _Device:
    state: str | None  # None until decided
    reason: str | None
    last_seen: float  # monotonic; when the gateway started tracking it, until first seen


class Liveness:
    """Online/offline state per registered device; thread-safe. The methods return the
    ``device_status`` points to store."""

    def __init__(
        self,
        registry: Callable[[], Registry],
        *,
        timeout_factor: float = 3.0,
        heartbeat_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._factor = timeout_factor
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._next_heartbeat = clock() + heartbeat_s
        self._sync(clock())

    def _sync(self, now: float) -> Registry:
        """Follow the registry: new devices start undecided, removed ones are forgotten."""
        registry = self._registry()
        for device in registry.devices:
            self._devices.setdefault(device.device_id, _Device(None, None, now))
        for device_id in [d for d in self._devices if d not in registry]:
            del self._devices[device_id]
        return registry

    def _change(
        self, registry: Registry, device_id: str, state: str, reason: str, note: str = ""
    ) -> list[str]:
        entry = self._devices[device_id]
        if entry.state == state:
            return []
        entry.state, entry.reason = state, reason
        log.log(
            logging.INFO if state == "online" else logging.WARNING,
            "device=%s %s (%s%s)",
            device_id,
            state,
            reason,
            note,
        )
        registered = registry.get(device_id)
        return [] if registered is None else [_point(registered, state, reason)]

    def seen(self, device_id: str) -> list[str]:
        """Telemetry or health with valid content arrived from the device."""
        with self._lock:
            now = self._clock()
            registry = self._sync(now) if device_id not in self._devices else self._registry()
            if device_id not in self._devices:
                return []
            self._devices[device_id].last_seen = now
            return self._change(registry, device_id, "online", "telemetry")

    def status(self, device_id: str, state: str) -> list[str]:
        """The device's status topic says ``online`` or (its last will) ``offline``."""
        with self._lock:
            now = self._clock()
            registry = self._sync(now) if device_id not in self._devices else self._registry()
            if device_id not in self._devices:
                return []
            if state == "online":
                self._devices[device_id].last_seen = now
                return self._change(registry, device_id, "online", "status")
            return self._change(registry, device_id, "offline", "will")

    def tick(self) -> list[str]:
        """Time out silent devices; every ``heartbeat_s``, the state of every device."""
        with self._lock:
            now = self._clock()
            registry = self._sync(now)
            lines: list[str] = []
            for device in registry.devices:
                entry = self._devices[device.device_id]
                timeout = self._factor * device.interval_s
                if entry.state != "offline" and now - entry.last_seen > timeout:
                    lines += self._change(
                        registry, device.device_id, "offline", "timeout", f" {timeout:g} s"
                    )
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self._heartbeat_s
                for device_id, entry in self._devices.items():
                    registered = registry.get(device_id)
                    if registered is not None and entry.state and entry.reason:
                        lines.append(_point(registered, entry.state, entry.reason))
            return lines

    def states(self) -> dict[str, str | None]:
        """device_id -> "online", "offline" or None (not decided yet)."""
        with self._lock:
            return {device_id: entry.state for device_id, entry in self._devices.items()}


def _point(device: RegisteredDevice, state: str, reason: str) -> str:
    fields: dict[str, bool | str] = {"online": state == "online", "state": state, "reason": reason}
    return (
        f"{DEVICE_STATUS_MEASUREMENT}{device.tag_string} {encode_fields(fields)} "
        f"{time.time_ns() // 1_000_000}"
    )


class StatusHandler:
    """(topic, payload) of a status message to (device, state); counts and logs rejections."""

    def __init__(self, channel: DeviceChannel) -> None:
        self._channel = channel

    def handle(self, topic: str, payload: bytes) -> tuple[RegisteredDevice | None, str | None]:
        received = self._channel.receive(topic, payload, parse_status)
        if received is None:
            return None, None
        self._channel.count_accepted()
        return received


def device_info_points(registry: Registry, now_ms: int) -> list[str]:
    """Where each board is and how often it reports, for geomap and liveness panels."""
    lines = []
    for device in registry.devices:
        fields: dict[str, float | bool] = {"registered": True, "interval_s": device.interval_s}
        if device.lat is not None and device.lon is not None:
            fields.update(lat=device.lat, lon=device.lon)
        lines.append(encode_point(DEVICE_INFO_MEASUREMENT, device.tags, fields, now_ms))
    return lines
