"""The two services of the local stack, their settings and where their files live."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = "mosquitto"
INFLUXDB = "influxdb"

PROBE_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.05
# After SIGKILL the kernel frees the process almost at once; this only bounds a stuck exit.
KILL_GRACE_S = 5.0


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = Path(".urbanpulse")
    host: str = "127.0.0.1"
    mqtt_port: int = 18831
    influx_port: int = 18086
    # influxd's RPC (backup/restore) bind-address, default :8088, must move too.
    influx_rpc_port: int = 18088
    database: str = "urbanpulse"
    # Resolved with shutil.which, also trying /usr/sbin; a value with a "/" is used as is.
    mosquitto_bin: str = "mosquitto"
    influxd_bin: str = "influxd"
    # Optional security, to test the gateway's TLS and authentication against the real
    # servers: a second, TLS-only Mosquitto listener (with a password file and optionally
    # client certificates; the plain listener stays open on loopback), and InfluxDB with
    # authentication on (this admin user is created at the first start).
    mqtt_tls_port: int | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    mqtt_password_file: Path | None = None
    mqtt_require_certificate: bool = False
    influx_admin: tuple[str, str] | None = field(default=None, repr=False)
    # With influx_admin: users of the database made at start, (name, password, privilege),
    # privilege ALL (the gateway: it writes, and reads for the KPIs) or READ (Grafana).
    influx_users: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)
    # The secure mode (urbanpulse.broker.policy): mqtt_port is a TLS-only listener with the
    # password file, this ACL, the packet and queue bounds and username-bound client ids;
    # needs the tls_* files and mqtt_password_file. No plain listener at all.
    mqtt_acl_file: Path | None = None

    @property
    def secure(self) -> bool:
        return self.mqtt_acl_file is not None


@dataclass(frozen=True)
class ServiceState:
    name: str  # "mosquitto" | "influxdb"
    pid: int | None  # from our pid file
    running: bool  # the pid is alive, is the process we started, and the port answers
    address: str  # "127.0.0.1:18831" / "http://127.0.0.1:18086"
    log_file: Path


class StackError(Exception):
    """The local stack could not be started, stopped or reached; the message says why."""


class NotInstalledError(StackError):
    """A service binary (mosquitto or influxd) was not found."""


@dataclass(frozen=True)
class Service:
    name: str
    binary: str  # as configured: a name to look up or a path
    package: str  # the Debian package that provides it
    dir: Path
    config_file: Path
    pid_file: Path
    log_file: Path
    ports: tuple[int, ...]  # every TCP port it binds
    address: str


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def state_root(settings: StackSettings) -> Path:
    # Absolute, because the paths go into config files and are matched in /proc/PID/cmdline.
    return settings.state_dir.expanduser().resolve()


def stack_services(settings: StackSettings) -> tuple[Service, Service]:
    root = state_root(settings)
    mosquitto_dir = root / "mosquitto"
    influx_dir = root / "influxdb"
    return (
        Service(
            name=MOSQUITTO,
            binary=settings.mosquitto_bin,
            package="mosquitto",
            dir=mosquitto_dir,
            config_file=mosquitto_dir / "mosquitto.conf",
            pid_file=mosquitto_dir / "mosquitto.pid",
            log_file=mosquitto_dir / "log" / "mosquitto.log",
            ports=(settings.mqtt_port,)
            + ((settings.mqtt_tls_port,) if settings.mqtt_tls_port else ()),
            address=host_port(settings.host, settings.mqtt_port),
        ),
        Service(
            name=INFLUXDB,
            binary=settings.influxd_bin,
            package="influxdb",
            dir=influx_dir,
            config_file=influx_dir / "influxdb.conf",
            pid_file=influx_dir / "influxdb.pid",
            log_file=influx_dir / "log" / "influxd.log",
            ports=(settings.influx_port, settings.influx_rpc_port),
            address="http://" + host_port(settings.host, settings.influx_port),
        ),
    )


