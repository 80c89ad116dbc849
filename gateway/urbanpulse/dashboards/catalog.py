"""Every dashboard, by the file name of its generated JSON."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dash

from . import air, lighting, mobility, network, noise, overview, water

DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "city-overview.json": overview.build,
    "air-quality.json": air.build,
    "noise.json": noise.build,
    "mobility.json": mobility.build,
    "street-lighting.json": lighting.build,
    "water.json": water.build,
    "network-health.json": network.build,
}
