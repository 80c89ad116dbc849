"""Device registry files: parsing, clear errors, import, reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanpulse.registry.devices import (
    Device,
    RegistryError,
    RegistryWatcher,
    import_devices,
    load_registry,
    save_registry,
)

CSV = """device_id,kind,district,site,lat,lon,interval_s
air-n-001,air,north,Town Hall,52.3702,4.8952,60
park-c-17,parking,centre,,,,
"""

TOML = """
[[device]]
device_id = "water-s-01"
kind = "water"
district = "south"
site = "Harbour bridge"
lat = 52.1
lon = 4.2
interval_s = 300
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_registry_gives_tags_and_defaults(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, "devices.csv", CSV))
    assert len(registry) == 2
    air = registry.get("air-n-001")
    assert air is not None
    assert air.device.tags == {
        "device_id": "air-n-001",
        "district": "north",
        "kind": "air",
        "site": "Town Hall",
    }
    assert air.tag_string == r",device_id=air-n-001,district=north,kind=air,site=Town\ Hall"
    park = registry.get("park-c-17")
    assert park is not None
    assert park.device.site is None and park.device.lat is None
    assert park.device.interval_s == 60.0
    assert "site" not in park.device.tags
    assert registry.get("nobody") is None


def test_toml_registry(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, "devices.toml", TOML))
    water = registry.get("water-s-01")
    assert water is not None
    assert (water.device.lat, water.device.lon, water.device.interval_s) == (52.1, 4.2, 300)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("Air-1,air,north,,,,", "line 2: device_id='Air-1'"),
        ("ab,air,north,,,,", "line 2: device_id='ab'"),
        ("air-1,rocket,north,,,,", "kind='rocket': must be one of air, noise"),
        ("air-1,air,,,,,", "district"),
        ("air-1,air,north,,91,0,", "lat='91': Input should be less than or equal to 90"),
        ("air-1,air,north,,,,0", "interval_s='0'"),
        ("air-1,air,north,,abc,,", "lat='abc'"),
        ("air-1,air,north,a\\b,,,", "site='a\\\\b': must not contain a backslash"),
        ("air-1,air,north,,,,,extra", "line 2: more cells than columns"),
    ],
)
def test_bad_csv_row_names_file_line_key_and_value(tmp_path: Path, row: str, expected: str) -> None:
    path = write(
        tmp_path, "devices.csv", "device_id,kind,district,site,lat,lon,interval_s\n" + row + "\n"
    )
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_newline_in_a_quoted_csv_cell_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", 'device_id,kind,district\nair-1,air,"north\nevil"\n')
    with pytest.raises(RegistryError, match="control characters"):
        load_registry(path)


def test_duplicate_device_and_unknown_column_are_refused(tmp_path: Path) -> None:
    dup = write(tmp_path, "dup.csv", "device_id,kind,district\nair-1,air,n\nair-1,noise,s\n")
    with pytest.raises(RegistryError, match=r"already registered at .*line 2"):
        load_registry(dup)
    unknown = write(tmp_path, "unk.csv", "device_id,kind,district,colour\n")
    with pytest.raises(RegistryError, match="found device_id, kind, district, colour"):
        load_registry(unknown)
    toml = write(
        tmp_path, "bad.toml", '[[device]]\ndevice_id="air-1"\nkind="air"\ndistrict="n"\nfoo=1\n'
    )
    with pytest.raises(RegistryError, match=r"device #1: foo=1: unknown key"):
        load_registry(toml)
    with pytest.raises(RegistryError, match=r"\.csv or \.toml"):
        load_registry(write(tmp_path, "devices.json", "{}"))
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "missing.csv")


def test_import_merges_and_writes_nothing_when_source_is_invalid(tmp_path: Path) -> None:
    target = write(tmp_path, "devices.csv", CSV)
    source = write(
        tmp_path,
        "new.toml",
        TOML + '\n[[device]]\ndevice_id = "air-n-001"\nkind = "air"\ndistrict = "west"\n',
    )
    assert import_devices(source, target) == (1, 1)
    registry = load_registry(target)
    assert len(registry) == 3
    moved = registry.get("air-n-001")
    assert moved is not None and moved.device.district == "west"

    before = target.read_text()
    bad = write(tmp_path, "bad.csv", "device_id,kind,district\nair-2,air,n\nBAD,air,n\n")
    with pytest.raises(RegistryError):
        import_devices(bad, target)
    assert target.read_text() == before


def test_save_round_trips_both_formats(tmp_path: Path) -> None:
    devices = [
        Device(
            device_id="noise-1",
            kind="noise",
            district="old town",
            site="Market, east",
            lat=1.5,
            lon=-2.25,
            interval_s=30,
        ),
        Device(device_id="soil-1", kind="soil", district="park"),
    ]
    for name in ("r.csv", "r.toml"):
        save_registry(devices, tmp_path / name)
        assert load_registry(tmp_path / name).devices == devices


def test_watcher_reloads_on_change_and_keeps_last_good_registry(tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", CSV)
    watcher = RegistryWatcher(path)
    assert watcher.poll() is False
    path.write_text(CSV + "soil-x-1,soil,east,,,,\n", encoding="utf-8")
    assert watcher.poll() is True
    assert "soil-x-1" in watcher.registry
    path.write_text(CSV + "soil-x-1,soil,east,,,,\nBROKEN\n", encoding="utf-8")
    with pytest.raises(RegistryError):
        watcher.poll()
    assert "soil-x-1" in watcher.registry  # the last good registry stays in force
