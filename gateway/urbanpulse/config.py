"""Gateway configuration: one TOML file, every key overridable from the environment.

``URBANPULSE_MQTT__HOST=broker.local`` overrides ``[mqtt] host``; environment beats file.
Secrets (passwords, tokens) may instead be read from a file named by ``*_file`` keys, so that
they stay out of the unit file and the process list.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "URBANPULSE_"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _readable(path: Path | None, key: str) -> None:
    """Fail at start (naming the key) rather than at the first TLS handshake."""
    if path is None:
        return
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{key} {str(path)!r} cannot be read: {exc.strerror}") from None


def _read_secret(value: SecretStr | None, file: Path | None, key: str) -> SecretStr | None:
    if file is None:
        return value
    try:
        secret = SecretStr(file.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{key}_file {str(file)!r} cannot be read: {exc.strerror}") from None
    # Equal when a section already read from the file is validated again (nested models).
    if value is not None and value != secret:
        raise ValueError(f"set either {key} or {key}_file, not both")
    return secret


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 18831
    topic_prefix: Annotated[str, Field(pattern=r"^[^#+/]+(/[^#+/]+)*$")] = "city"
    # A fixed client id with a persistent session lets the broker keep messages for us
    # while the gateway restarts.
    client_id: Annotated[str, Field(min_length=1, max_length=64)] = "urbanpulse-gateway"
    protocol: Literal["3.1.1", "5"] = "5"
    clean_start: bool = False
    session_expiry_s: Annotated[int, Field(ge=0)] = 86400
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # How many unacknowledged messages the broker may have in flight to us (MQTT 5 Receive
    # Maximum). We acknowledge only after storing, so this bounds memory and sets throughput.
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 20000
    # Several gateways share the load with an MQTT 5 shared subscription
    # ($share/{group}/...): each message goes to one of them. Each needs its own client_id.
    shared_group: Annotated[str, Field(pattern=r"^[^#+/]+$")] | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # TLS to the broker. ca_file: the CA that signed the broker's certificate (else the
    # system's trust store). cert_file + key_file: a client certificate, for brokers that
    # require one (mosquitto `require_certificate true`).
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _secret(self) -> MqttSettings:
        if self.shared_group and self.protocol != "5":
            raise ValueError("shared_group needs protocol = '5'")
        self.password = _read_secret(self.password, self.password_file, "password")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError("ca_file/cert_file/key_file need tls = true")
        for key in ("ca_file", "cert_file", "key_file"):
            _readable(getattr(self, key), key)
        return self


class InfluxSettings(_Section):
    url: str = "http://127.0.0.1:18086"
    # v1: the 1.x /write API (InfluxDB 1.x, and 2.x/3.x through their 1.x compatibility);
    # v2: influxdb-client against /api/v2/write (InfluxDB 2.x/3.x, VictoriaMetrics).
    api: Literal["v1", "v2"] = "v1"
    database: Annotated[str, Field(min_length=1)] = "urbanpulse"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    org: str | None = None
    bucket: str | None = None
    # InfluxDB 2/3 (either api): an API token. InfluxDB 1.x with auth on: username/password.
    token: SecretStr | None = None
    token_file: Path | None = None
    # For an https url: the CA that signed InfluxDB's certificate (else the system's store).
    ca_file: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    create_database: bool = True

    @model_validator(mode="after")
    def _check(self) -> InfluxSettings:
        self.password = _read_secret(self.password, self.password_file, "password")
        self.token = _read_secret(self.token, self.token_file, "token")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        if self.token is not None and self.password is not None:
            raise ValueError("set either token (InfluxDB 2/3) or username/password (1.x)")
        _readable(self.ca_file, "ca_file")
        if self.api == "v2" and not self.org:
            raise ValueError("api = 'v2' needs org (and token unless auth is off)")
        return self

    @property
    def bucket_name(self) -> str:
        return self.bucket or self.database


class BatchSettings(_Section):
    max_points: Annotated[int, Field(ge=1, le=100_000)] = 5000
    max_delay_s: Annotated[float, Field(gt=0, le=1.0)] = 1.0


class RegistrySettings(_Section):
    path: Path = Path("devices.csv")
    reload_interval_s: Annotated[float, Field(gt=0)] = 5.0


class KeySettings(_Section):
    # The boards' device keys (CONTRACT.md v2): JSON, readable by the gateway's user only;
    # provisioning adds to it, the gateway reloads it with the registry.
    device_keys: Path | None = None
    # The city's command public key (64 hex digits): provisioning writes it into every
    # board's config, and the board then carries out only commands signed with its private
    # half, which stays with the operators.
    command_public: Path | None = None
    # The city's release public key (64 hex digits): provisioning writes it into every board's
    # config ("ota_key"), and the board then installs only releases it signed
    # (`urbanpulse ota build`); `ota push` checks a release against it before offering it.
    release_public: Path | None = None
    # The gateway's receipt key (Ed25519, PKCS#8 PEM, 0600; `urbanpulse keys new`): it signs
    # the hourly receipts. None: sealed payloads are archived, but no receipt is made.
    receipt_key: Path | None = None


class ArchiveSettings(_Section):
    """Sealed (CONTRACT.md v2) payloads as received, and the hourly receipts over them."""

    # Relative to the configuration file; systemd: /var/lib/urbanpulse/archive.
    path: Path = Path("archive")
    # Synced before each acknowledged batch (one fsync per batch), or see FsyncPolicy.
    fsync: FsyncPolicy = "always"
    fsync_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # Closed hours older than this many days are deleted, receipts kept; None: kept for ever
    # (an export can prove only what the archive still holds).
    retention_days: Annotated[float, Field(gt=0)] | None = None
    # And at most this many bytes: the oldest closed hours go first, receipts kept; None: no
    # bound (an hour not yet receipted is never deleted, whatever its size).
    max_bytes: Annotated[int, Field(ge=1 << 20)] | None = None


class ExportSettings(_Section):
    """What an open-data export (`urbanpulse export`) says about itself."""

    title: str = "UrbanPulse city sensor readings"
    publisher: str = ""  # the city's name
    licence: str = "CC-BY-4.0"  # an SPDX licence id or a URL


class ValidationSettings(_Section):
    # Samples stamped further in the future than this are refused (a board's clock is off).
    max_future_s: Annotated[int, Field(ge=0)] = 600


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # At most one log line per rejection reason per interval; the rest are counted.
    rejection_interval_s: Annotated[float, Field(ge=0)] = 10.0


class StatsSettings(_Section):
    # The gateway writes its own counters to InfluxDB (measurement gateway_stats).
    interval_s: Annotated[float, Field(gt=0)] = 5.0


class MetricsSettings(_Section):
    # Prometheus /metrics (and `urbanpulse gateway status`); port 0 = off.
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class LivenessSettings(_Section):
    # A device is offline after this many registry interval_s without a message.
    timeout_factor: Annotated[float, Field(ge=1)] = 3.0
    # device_status is re-written for every device this often (dashboards' last()).
    heartbeat_s: Annotated[float, Field(gt=0)] = 300.0


# always: on disk before the acknowledgement (survives power loss); interval: synced at most
# every fsync_interval_s; never: left to the OS (survives a gateway crash only).
FsyncPolicy = Literal["always", "interval", "never"]


class SpoolSettings(_Section):
    """The on-disk spool: batches InfluxDB cannot take now wait here, acknowledged."""

    # Relative to the configuration file; systemd: /var/lib/urbanpulse/spool.
    path: Path = Path("spool")
    # When full, the gateway stops acknowledging and the broker keeps the messages.
    max_bytes: Annotated[int, Field(ge=4096)] = 1 << 30
    segment_bytes: Annotated[int, Field(ge=1024)] = 16 << 20
    # Each batch on disk before its ack, or see FsyncPolicy.
    fsync: FsyncPolicy = "always"
    fsync_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # Points InfluxDB refuses for good (JSON lines); default: dead-letter.jsonl in path.
    dead_letter_path: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> SpoolSettings:
        if self.segment_bytes > self.max_bytes:
            raise ValueError(
                f"segment_bytes {self.segment_bytes} must not exceed max_bytes {self.max_bytes}"
            )
        return self

    @property
    def dead_letter_file(self) -> Path:
        return self.dead_letter_path or self.path / "dead-letter.jsonl"


class DedupSettings(_Section):
    # Redelivered messages recognised by (device_id, boot, seq) among this many recent ones.
    max_entries: Annotated[int, Field(ge=1)] = 200_000


class KpiSettings(_Section):
    """The KPI engine (urbanpulse.kpi): city KPIs computed from stored telemetry."""

    enabled: bool = True
    interval_s: Annotated[float, Field(gt=0)] = 60.0
    # Each run recomputes the last lookback_h hours and the local days they touch.
    lookback_h: Annotated[int, Field(ge=1, le=168)] = 3
    # Local days (daily KPIs, Lden periods) are days in this time zone.
    timezone: str = "Europe/Amsterdam"
    # Sunrise/sunset for lamps without lat/lon in the registry (default: Amsterdam).
    latitude: Annotated[float, Field(ge=-90, le=90)] = 52.3676
    longitude: Annotated[float, Field(ge=-180, le=180)] = 4.9041
    # Lden periods in local hours: day [day, evening), evening [evening, night), night rest.
    day_start_h: Annotated[int, Field(ge=0, le=23)] = 7
    evening_start_h: Annotated[int, Field(ge=1, le=23)] = 19
    night_start_h: Annotated[int, Field(ge=2, le=24)] = 23
    # A lamp is judged only this long after sunrise/sunset (photocells, schedules).
    twilight_margin_min: Annotated[float, Field(ge=0, le=180)] = 30.0
    # Lamp on in daylight + off at night for at least this long in a window = a fault.
    fault_min_h: Annotated[float, Field(gt=0)] = 0.25
    @model_validator(mode="after")
    def _check(self) -> KpiSettings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {self.timezone!r} is not a known IANA time zone"
            ) from None
        if not self.day_start_h < self.evening_start_h < self.night_start_h:
            raise ValueError(
                "need day_start_h < evening_start_h < night_start_h, got "
                f"{self.day_start_h}, {self.evening_start_h}, {self.night_start_h}"
            )
        return self


# The most worker processes a gateway may run: the broker's ACL names each one's user
# (broker/policy.py), so that each has its own session.
MAX_WORKERS = 16


class ServiceSettings(_Section):
    """The gateway's processes (README: "Every core: workers")."""

    # 1: one process, as always. N > 1 or "auto" (one per core): N worker processes, each
    # its own MQTT session in one shared subscription, its own spool and batcher, under one
    # parent that systemd sees (liveness, KPIs and /metrics are the parent's, computed once).
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | Literal["auto"] = 1

    def worker_count(self) -> int:
        if self.workers == "auto":
            return min(os.cpu_count() or 1, MAX_WORKERS)
        return self.workers


def worker_name(name: str, index: int) -> str:
    """Worker ``index``'s MQTT client id, or broker user, from the gateway's."""
    return f"{name}-w{index}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    batch: BatchSettings = BatchSettings()
    registry: RegistrySettings = RegistrySettings()
    keys: KeySettings = KeySettings()
    validation: ValidationSettings = ValidationSettings()
    log: LogSettings = LogSettings()
    stats: StatsSettings = StatsSettings()
    metrics: MetricsSettings = MetricsSettings()
    liveness: LivenessSettings = LivenessSettings()
    kpi: KpiSettings = KpiSettings()
    spool: SpoolSettings = SpoolSettings()
    archive: ArchiveSettings = ArchiveSettings()
    export: ExportSettings = ExportSettings()
    dedup: DedupSettings = DedupSettings()
    service: ServiceSettings = ServiceSettings()

    @model_validator(mode="after")
    def _workers(self) -> Settings:
        if self.service.worker_count() > 1 and self.mqtt.protocol != "5":
            raise ValueError("[service] workers > 1 needs [mqtt] protocol = '5' (the workers "
                             "share one subscription)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        key = f"[{'.'.join(loc[:-1])}] {loc[-1]}" if len(loc) > 1 else loc[0] if loc else "?"
        env = ENV_PREFIX + "__".join(p.upper() for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" = {value!r}"
        lines.append(f"  {key}{shown}: {msg} (environment: {env})")
    return "\n".join(lines)


def load_settings(path: Path | None) -> Settings:
    """Read ``path`` (if given) and the environment; raise ConfigError with a clear text."""
    data: dict[str, Any] = {}
    source = str(path) if path else "environment"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    if path is not None and not settings.registry.path.is_absolute():
        # A relative registry path is relative to the configuration file, not to the cwd
        # systemd happens to start us in.
        settings.registry.path = path.parent / settings.registry.path
    if path is not None:
        spool = settings.spool
        if not spool.path.is_absolute():
            spool.path = path.parent / spool.path
        if spool.dead_letter_path is not None and not spool.dead_letter_path.is_absolute():
            spool.dead_letter_path = path.parent / spool.dead_letter_path
        if not settings.archive.path.is_absolute():
            settings.archive.path = path.parent / settings.archive.path
    return settings
