"""The gateway against real Mosquitto and InfluxDB: values, tags, rejections, at-least-once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    count_points,
    gateway_settings,
    rows,
    running_gateway,
)
from support.services import Services, free_port, influx_query
from support.waiting import wait_until
from urbanpulse.contract.vocabulary import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.services


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(REGISTRY_CSV, encoding="utf-8")
    return path


@pytest.fixture
def publisher(services: Services) -> Any:
    pub = Publisher(services)
    yield pub
    pub.close()


def test_known_messages_arrive_with_exact_values_timestamps_and_registry_tags(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    t0 = now_ms() - 60_000
    with running_gateway(gateway_settings(influx, registry, client_id)):
        publisher.publish(
            "city/air-north-01/telemetry",
            {
                "v": 1,
                "boot": 3,
                "seq": 0,
                "samples": [
                    {"t": t0, "pm25": 12.4, "pm10": 20, "temperature": -3.25, "humidity": 48.0},
                    {"t": t0 + 1, "pm25": 13.0},
                ],
            },
        )
        publisher.publish(
            "city/light-north-01/telemetry",
            {
                "v": 1,
                "boot": 1,
                "seq": 5,
                "samples": [
                    {"t": t0 + 7, "lamp_on": True, "power": 61.5, "energy": 1234.5},
                ],
            },
        )
        publisher.publish(
            "city/park-south-01/telemetry",
            {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": t0 + 9, "occupied": False}]},
        )
        wait_until(lambda: count_points(influx, "parking", "occupied") == 1, what="parking")
        wait_until(lambda: count_points(influx, "air_quality", "pm25") == 2, what="air")

    air = rows(influx, "SELECT * FROM air_quality")
    assert air == [
        {
            "time": t0,
            "device_id": "air-north-01",
            "district": "north",
            "kind": "air",
            "site": "Town Hall",
            "pm25": 12.4,
            "pm10": 20.0,
            "temperature": -3.25,
            "humidity": 48.0,
        },
        {
            "time": t0 + 1,
            "device_id": "air-north-01",
            "district": "north",
            "kind": "air",
            "site": "Town Hall",
            "pm25": 13.0,
            "pm10": None,
            "temperature": None,
            "humidity": None,
        },
    ]
    light = rows(influx, "SELECT * FROM streetlight")
    assert light == [
        {
            "time": t0 + 7,
            "device_id": "light-north-01",
            "district": "north",
            "kind": "streetlight",
            "site": "Canal Street",
            "lamp_on": True,
            "power": 61.5,
            "energy": 1234.5,
        },
    ]
    # A device without a site gets no site tag (not an empty one).
    parking = rows(influx, "SELECT * FROM parking")
    assert parking == [
        {
            "time": t0 + 9,
            "device_id": "park-south-01",
            "district": "south",
            "kind": "parking",
            "occupied": False,
        }
    ]
    # Field types are fixed: counts are floats, so 20 and 20.0 never conflict.
    field_types = rows(influx, "SHOW FIELD KEYS FROM air_quality")
    assert {r["fieldKey"]: r["fieldType"] for r in field_types}["pm10"] == "float"


def test_device_registry_and_gateway_stats_are_stored_for_dashboards(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    with running_gateway(gateway_settings(influx, registry, client_id)) as gateway:
        publisher.publish(
            "city/air-north-01/telemetry",
            {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now_ms(), "pm1": 1}]},
        )
        publisher.publish(
            "city/nobody-01/telemetry",
            {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now_ms(), "pm1": 1}]},
        )
        wait_until(lambda: gateway.stats.snapshot()["stored_points"] >= 5, what="stored")
        wait_until(
            lambda: (
                rows(
                    influx,
                    "SELECT last(received) AS r, last(rejected_unknown_device) AS u "
                    "FROM gateway_stats",
                )
                and rows(
                    influx,
                    "SELECT last(received) AS r, last(rejected_unknown_device) AS u "
                    "FROM gateway_stats",
                )[0]["u"]
                == 1
            ),
            what="gateway_stats with the rejection",
        )
    info = rows(influx, "SELECT lat, lon, interval_s FROM device_info GROUP BY device_id")
    by_id = {r["device_id"]: r for r in info}
    assert set(by_id) == {"air-north-01", "noise-centre-01", "park-south-01", "light-north-01"}
    assert (by_id["air-north-01"]["lat"], by_id["air-north-01"]["lon"]) == (52.3702, 4.8952)
    assert by_id["park-south-01"]["lat"] is None
    assert by_id["park-south-01"]["interval_s"] == 30.0


def good(seq: int, t: int, value: float = 10.0) -> dict[str, Any]:
    return {"v": 1, "boot": 1, "seq": seq, "samples": [{"t": t, "laeq": value}]}


BAD_MESSAGES: list[tuple[str, str, bytes]] = [
    ("not_json", "city/noise-centre-01/telemetry", b"{this is not json"),
    ("bad_envelope", "city/noise-centre-01/telemetry", b'{"v": 1, "boot": 1}'),
    (
        "unsupported_version",
        "city/noise-centre-01/telemetry",
        b'{"v": 9, "boot": 1, "seq": 0, "samples": []}',
    ),
    ("unknown_device", "city/ghost-01/telemetry", json.dumps(good(0, 1_763_700_000_000)).encode()),
    ("bad_topic", "city/BAD_ID!/telemetry", json.dumps(good(0, 1_763_700_000_000)).encode()),
    ("bad_topic", "city/x/telemetry", json.dumps(good(0, 1_763_700_000_000)).encode()),
    ("too_large", "city/noise-centre-01/telemetry", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"),
]


def test_bad_messages_are_rejected_by_reason_while_good_traffic_flows(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    t0 = now_ms() - 10_000
    with running_gateway(gateway_settings(influx, registry, client_id)) as gateway:
        seq = 0
        for _, topic, payload in BAD_MESSAGES:
            publisher.publish("city/noise-centre-01/telemetry", good(seq, t0 + seq))
            seq += 1
            publisher.publish(topic, payload)
        # one message mixing good samples with bad ones: only the bad samples go
        publisher.publish(
            "city/noise-centre-01/telemetry",
            {
                "v": 1,
                "boot": 1,
                "seq": seq,
                "samples": [
                    {"t": t0 + 100, "laeq": 50.0},
                    {"t": t0 + 101, "laeq": 999},
                    {"t": t0 + 102, "laeq": "loud"},
                    {"t": t0 + 103, "colour": 1},
                    {"t": t0 + 104, "laeq": 51.0},
                ],
            },
        )
        publisher.publish(
            "city/noise-centre-01/telemetry",
            b'{"v":1,"boot":1,"seq":99,"samples":[{"t":%d,"laeq":NaN}]}' % t0,
        )
        wait_until(
            lambda: count_points(influx, "noise", "laeq") == len(BAD_MESSAGES) + 2,
            what="all good samples stored",
        )
        wait_until(
            lambda: gateway.stats.snapshot()["received"] == len(BAD_MESSAGES) * 2 + 2,
            what="all messages received",
        )
        snap = gateway.stats.snapshot()
    assert snap["rejected_messages"] == len(BAD_MESSAGES)
    for reason in {r for r, _, _ in BAD_MESSAGES}:
        expected = sum(1 for r, _, _ in BAD_MESSAGES if r == reason)
        assert snap[f"rejected_{reason}"] == expected, reason
    assert snap["rejected_samples"] == 4
    assert (
        snap["rejected_out_of_range"],
        snap["rejected_wrong_type"],
        snap["rejected_unknown_field"],
        snap["rejected_not_finite"],
    ) == (1, 1, 1, 1)
    values = [
        r["laeq"] for r in rows(influx, f"SELECT laeq FROM noise WHERE time >= {t0 + 100}ms")
    ]
    assert values == [50.0, 51.0]


def test_line_protocol_escaping_with_hostile_registry_strings(
    influx: Services, tmp_path: Path, client_id: str, publisher: Publisher
) -> None:
    hostile_site = 'x,district=evil injected=1 0 "quoted" =eq, tail '
    hostile_district = "old town,kind=air"
    registry = tmp_path / "devices.toml"
    registry.write_text(
        "[[device]]\n"
        f'device_id = "soil-evil-01"\nkind = "soil"\ndistrict = {json.dumps(hostile_district)}\n'
        f"site = {json.dumps(hostile_site)}\n",
        encoding="utf-8",
    )
    t = now_ms() - 5000
    with running_gateway(gateway_settings(influx, registry, client_id)):
        publisher.publish(
            "city/soil-evil-01/telemetry",
            {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": t, "soil_moisture": 30.5}]},
        )
        wait_until(lambda: count_points(influx, "soil", "soil_moisture") == 1, what="soil")
    stored = rows(influx, "SELECT * FROM soil")
    # The registry strips surrounding blanks; everything else arrives exactly as written.
    assert stored == [
        {
            "time": t,
            "device_id": "soil-evil-01",
            "district": hostile_district,
            "kind": "soil",
            "site": hostile_site.strip(),
            "soil_moisture": 30.5,
        }
    ]
    measurements = {r["name"] for r in rows(influx, "SHOW MEASUREMENTS")}
    assert measurements <= {"soil", "device_info", "gateway_stats", "device_status"}
    tag_keys = {r["tagKey"] for r in rows(influx, "SHOW TAG KEYS FROM soil")}
    assert tag_keys == {"device_id", "district", "kind", "site"}


def test_redelivered_message_is_stored_once(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    t = now_ms() - 3000
    message = {
        "v": 1,
        "boot": 4,
        "seq": 17,
        "samples": [{"t": t, "laeq": 60.0, "lamax": 70.0}, {"t": t + 1000, "laeq": 61.0}],
    }
    with running_gateway(gateway_settings(influx, registry, client_id)) as gateway:
        for _ in range(3):
            publisher.publish("city/noise-centre-01/telemetry", message)
        wait_until(lambda: gateway.stats.snapshot()["accepted"] == 3, what="3 deliveries")
        wait_until(lambda: count_points(influx, "noise", "laeq") == 2, what="stored")
        time.sleep(1.5)  # one more batch interval: nothing else may appear
    assert [(r["time"], r["laeq"]) for r in rows(influx, "SELECT laeq FROM noise")] == [
        (t, 60.0),
        (t + 1000, 61.0),
    ]


def test_newly_registered_device_is_accepted_after_registry_reload(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    with running_gateway(gateway_settings(influx, registry, client_id)) as gateway:
        message = {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now_ms(), "water_level": 42}]}
        publisher.publish("city/water-east-01/telemetry", message)
        wait_until(
            lambda: gateway.stats.snapshot()["rejected_unknown_device"] == 1,
            what="rejection of the unregistered board",
        )
        registry.write_text(REGISTRY_CSV + "water-east-01,water,east,Weir,,,60\n")
        wait_until(
            lambda: "water-east-01" in gateway.registry_watcher.registry, what="registry reload"
        )
        publisher.publish("city/water-east-01/telemetry", message)
        wait_until(lambda: count_points(influx, "water", "water_level") == 1, what="stored")
    assert rows(influx, "SELECT water_level FROM water GROUP BY district")[0]["district"] == "east"


def test_nothing_is_acknowledged_until_stored_so_a_later_gateway_gets_it(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    """At-least-once: a gateway that cannot store leaves messages with the broker."""
    t = now_ms() - 20_000
    unreachable = gateway_settings(influx, registry, client_id)
    unreachable.influx.url = f"http://127.0.0.1:{free_port()}"  # nobody listens here
    with running_gateway(unreachable, stop_timeout_s=1.0) as first:
        for seq in range(20):
            publisher.publish("city/noise-centre-01/telemetry", good(seq, t + seq, 40.0 + seq))
        wait_until(lambda: first.stats.snapshot()["received"] == 20, what="receipt")
        wait_until(lambda: first.stats.snapshot()["write_errors"] >= 1, what="a failed write")
    assert count_points(influx, "noise", "laeq") == 0

    # Same client id, persistent session: the broker delivers the unacknowledged messages.
    with running_gateway(gateway_settings(influx, registry, client_id)):
        wait_until(lambda: count_points(influx, "noise", "laeq") == 20, what="redelivery")
    stored = rows(influx, "SELECT laeq FROM noise")
    assert [r["laeq"] for r in stored] == [40.0 + i for i in range(20)]


def test_stored_points_are_queryable_by_registry_tags(
    influx: Services, registry: Path, client_id: str, publisher: Publisher
) -> None:
    t = now_ms() - 30_000
    with running_gateway(gateway_settings(influx, registry, client_id)):
        for i in range(10):
            publisher.publish("city/noise-centre-01/telemetry", good(i, t + i * 1000, 50 + i))
            publisher.publish(
                "city/air-north-01/telemetry",
                {"v": 1, "boot": 1, "seq": i, "samples": [{"t": t + i * 1000, "pm25": i}]},
            )
        wait_until(lambda: count_points(influx, "noise", "laeq") == 10, what="noise")
        wait_until(lambda: count_points(influx, "air_quality", "pm25") == 10, what="air")
    series = influx_query(influx, "SELECT max(pm25) FROM air_quality WHERE district = 'north'")
    assert series[0]["values"][0][1] == 9.0
    series = influx_query(influx, "SELECT count(laeq) FROM noise WHERE site = 'Market Square'")
    assert series[0]["values"][0][1] == 10
