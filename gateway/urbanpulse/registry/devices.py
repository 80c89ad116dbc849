"""The device registry: which boards exist, and the tags their data is stored under.

An operator keeps it as a CSV or TOML file (chosen by the file's extension):

CSV, one row per device, header required::

    device_id,kind,district,site,lat,lon,interval_s
    air-n-001,air,north,Town Hall,52.3702,4.8952,60

TOML, one ``[[device]]`` table per device with the same keys.

Tags come from here and never from a payload, so a board cannot claim another district.
"""

from __future__ import annotations

import csv
import io
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass as validated

from urbanpulse.contract.lineprotocol import check_tag_text, encode_tags
from urbanpulse.contract.vocabulary import DEVICE_ID_PATTERN, KINDS

from .watch import FileWatcher

COLUMNS = ("device_id", "kind", "district", "site", "lat", "lon", "interval_s", "threshold_cm",
           "require_sealed")
DEFAULT_INTERVAL_S = 60.0


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the file, row and key."""


def _tag_text(value: str) -> str:
    problem = check_tag_text(value)
    if problem is not None:
        raise ValueError(problem)
    if len(value) > 64:
        raise ValueError("must be at most 64 characters")
    return value


@validated(frozen=True, slots=True,
           config=ConfigDict(extra="forbid", str_strip_whitespace=True))
class Device:
    """A registered board. A validated dataclass with slots, not a BaseModel: every gateway
    process holds the whole registry, and a city's 10 000 boards take 1.6 MB so rather than
    11 MB (bench/bench_scale.py)."""

    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    kind: Annotated[str, Field(json_schema_extra={"enum": list(KINDS)})]
    district: str
    site: str | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    # How often the board reports; liveness and completeness KPIs derive from it.
    interval_s: Annotated[float, Field(gt=0, le=86400)] = DEFAULT_INTERVAL_S
    # Water boards: the alert level (cm, same datum as water_level) the KPIs watch.
    threshold_cm: Annotated[float, Field(ge=-500, le=5000)] | None = None
    # Only sealed (CONTRACT.md v2) telemetry is accepted from the board: a city moves its
    # boards to version 2 one by one.
    require_sealed: bool = False

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return value

    @field_validator("district")
    @classmethod
    def _district_text(cls, value: str) -> str:
        return _tag_text(value)

    @field_validator("site")
    @classmethod
    def _site_text(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else _tag_text(value)

    @property
    def tags(self) -> dict[str, str]:
        tags = {"device_id": self.device_id, "district": self.district, "kind": self.kind}
        if self.site:
            tags["site"] = self.site
        return tags

    @staticmethod
    def parse(row: Mapping[str, Any]) -> Device:
        """A device from a registry row (strings as a CSV gives them, or values);
        ValidationError naming each bad key."""
        return _DEVICE.validate_python(dict(row))

    def row(self) -> dict[str, Any]:
        """The keys that are set, as a registry row."""
        return {k: v for k, v in asdict(self).items() if v is not None}


_DEVICE = TypeAdapter(Device)


@dataclass(frozen=True)
class RegisteredDevice:
    """A device with its line-protocol tag string computed once, not per point."""

    device: Device
    tag_string: str


class Registry:
    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._by_id: dict[str, RegisteredDevice] = {}
        for device in devices:
            self._by_id[device.device_id] = RegisteredDevice(device, encode_tags(device.tags))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._by_id

    def get(self, device_id: str) -> RegisteredDevice | None:
        return self._by_id.get(device_id)

    @property
    def devices(self) -> list[Device]:
        return [r.device for r in self._by_id.values()]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"]) or "row"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            msg = f"unknown key (allowed: {', '.join(COLUMNS)})"
        parts.append(f"{key}={err.get('input')!r}: {msg}")
    return "; ".join(parts)


def _rows_from_csv(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    if unknown or "device_id" not in header:
        raise RegistryError(
            f"{path}: header must name columns from {', '.join(COLUMNS)} "
            f"(device_id required); found {', '.join(header) or 'nothing'}"
        )
    rows = []
    for row in reader:
        # Blank cells mean "not set", so optional columns may stay empty.
        values = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if None in row:
            raise RegistryError(f"{path} line {reader.line_num}: more cells than columns")
        rows.append((f"{path} line {reader.line_num}", values))
    return rows


def _rows_from_toml(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    extra = set(data) - {"device"}
    if extra or not isinstance(data.get("device", []), list):
        raise RegistryError(f"{path}: expected only [[device]] tables, found {sorted(data)}")
    return [(f"{path} device #{i + 1}", row) for i, row in enumerate(data.get("device", []))]


def parse_registry(text: str, path: Path) -> list[Device]:
    """Parse registry text; ``path``'s extension picks the format and names errors."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _rows_from_csv(text, path)
    elif suffix == ".toml":
        rows = _rows_from_toml(text, path)
    else:
        raise RegistryError(f"{path}: registry must be a .csv or .toml file")
    devices: list[Device] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        try:
            device = Device.parse(row)
        except ValidationError as exc:
            raise RegistryError(f"{where}: {_describe(exc)}") from None
        if device.device_id in seen:
            raise RegistryError(
                f"{where}: device_id {device.device_id!r} already registered at "
                f"{seen[device.device_id]}"
            )
        seen[device.device_id] = where
        devices.append(device)
    return devices


def load_registry(path: Path) -> Registry:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text: {exc}") from None
    return Registry(parse_registry(text, path))


def render_registry(devices: Iterable[Device], path: Path) -> str:
    rows = [d.row() for d in devices]
    for row in rows:
        if not row["require_sealed"]:
            del row["require_sealed"]
    if path.suffix.lower() == ".toml":
        return tomli_w.dumps({"device": rows})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def save_registry(devices: Iterable[Device], path: Path) -> None:
    """Write atomically, so a gateway reloading the file never reads half of it."""
    text = render_registry(devices, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def import_devices(source: Path, target: Path) -> tuple[int, int]:
    """Merge ``source``'s devices into ``target`` (created if missing).

    A device already in ``target`` is replaced by the imported row. Returns (added, updated).
    Nothing is written unless the whole source file is valid.
    """
    return merge_devices(load_registry(source).devices, target)


def merge_devices(incoming: Iterable[Device], target: Path) -> tuple[int, int]:
    """Add or replace ``incoming`` devices in the registry file ``target`` (created if
    missing). Returns (added, updated)."""
    current = load_registry(target).devices if target.exists() else []
    merged = {d.device_id: d for d in current}
    added = updated = 0
    for device in incoming:
        if device.device_id in merged:
            updated += 1
        else:
            added += 1
        merged[device.device_id] = device
    save_registry(merged.values(), target)
    return added, updated


class RegistryWatcher(FileWatcher[Registry]):
    """Reloads the registry when its file changes; a broken edit (RegistryError) keeps the
    last good one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, load_registry)

    @property
    def registry(self) -> Registry:
        return self.value
