"""The city's headline KPIs: one InfluxQL query each, shared by the City overview dashboard's
stat panels and the demo's live view (so both show the same numbers).

Each query returns one number over `$timeFilter`, from the KPI engine's measurements
(the latest hour or run per district or device, then combined across the city).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Headline:
    key: str
    title: str
    query: str
    description: str


HEADLINES: tuple[Headline, ...] = (
    Headline(
        "city_aqi", "City AQI",
        'SELECT max("aqi") FROM (SELECT last("aqi") AS "aqi" FROM "kpi_aqi" '
        "WHERE \"level\" = 'district' AND $timeFilter GROUP BY \"district\")",
        "US EPA AQI of the worst district (24-hour PM2.5/PM10 means, latest hour).",
    ),
    Headline(
        "online_ratio", "Boards online",
        'SELECT last("availability") FROM "kpi_network_now" '
        "WHERE \"level\" = 'city' AND $timeFilter",
        "Share of registered boards seen within their timeout.",
    ),
    Headline(
        "parking_free", "Parking free",
        'SELECT sum("free") FROM (SELECT last("free") AS "free" FROM "kpi_parking_now" '
        "WHERE \"level\" = 'district' AND $timeFilter GROUP BY \"district\")",
        "Free bays reporting now, all districts.",
    ),
    Headline(
        "traffic_flow_vph", "Traffic flow",
        'SELECT sum("flow_vph") FROM (SELECT last("flow_vph") AS "flow_vph" '
        "FROM \"kpi_traffic_hourly\" WHERE \"level\" = 'district' AND $timeFilter "
        'GROUP BY "district")',
        "Vehicles per hour in the latest hour, summed over the districts' counters.",
    ),
    Headline(
        "lamps_faulty", "Lamps faulty",
        'SELECT count("fault") FROM (SELECT last("fault") AS "fault" '
        "FROM \"kpi_streetlight_hourly\" WHERE \"level\" = 'device' AND $timeFilter "
        'GROUP BY "device_id") WHERE "fault" = true',
        "Lamps whose latest hour was a fault (on in daylight or off at night).",
    ),
    Headline(
        "rivers_above", "Rivers above threshold",
        'SELECT count("above") FROM (SELECT last("above") AS "above" FROM "kpi_water" '
        "WHERE \"level\" = 'device' AND $timeFilter GROUP BY \"device_id\") "
        'WHERE "above" = true',
        "Water level sensors whose latest hour is above their alert level.",
    ),
)

HEADLINE_BY_KEY = {h.key: h for h in HEADLINES}
