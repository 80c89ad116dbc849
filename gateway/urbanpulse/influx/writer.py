"""Writing line protocol to InfluxDB.

Two writers with one interface:
- ``V1Writer``: the 1.x ``/write`` HTTP API, which InfluxDB 1.x serves and 2.x/3.x accept
  for compatibility (database = bucket there);
- ``V2Writer``: ``influxdb-client`` against ``/api/v2/write`` (InfluxDB 2.x/3.x, and servers
  that speak it, such as VictoriaMetrics), with org, bucket and token.

Both raise ``WriteError`` telling whether retrying can help: a server that is down or
overloaded (retryable) or one that refused the points themselves (not retryable).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Protocol

import urllib3

from urbanpulse.config import InfluxSettings

from .influxql import ident


class WriteError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class PointWriter(Protocol):
    def write(self, lines: list[str]) -> None: ...

    def ensure_database(self) -> None: ...

    def close(self) -> None: ...


def _is_retryable(status: int) -> bool:
    """Whether the same points may be accepted later. 429 and 5xx: an overloaded or broken
    server. 401/403 (credentials, rights) and 404 (database or bucket missing): an operator
    fixes the configuration, and the data must wait for that, not be thrown away. Any other
    4xx (400 bad points, 413 too large, 422 outside retention) refuses the points themselves."""
    return status in (401, 403, 404, 408, 429) or status >= 500


class V1Writer:
    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._base = settings.url.rstrip("/")
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=2,
            timeout=urllib3.Timeout(connect=min(5.0, settings.timeout_s), read=settings.timeout_s),
            retries=False,
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
        )
        self._headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.token is not None:
            # InfluxDB 2/3 accept a token on their 1.x-compatible /write and /query.
            self._headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        elif settings.username and settings.password is not None:
            self._headers.update(
                urllib3.make_headers(
                    basic_auth=f"{settings.username}:{settings.password.get_secret_value()}"
                )
            )

    def _request(
        self, method: str, path: str, fields: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        try:
            url = f"{self._base}{path}?{urllib.parse.urlencode(fields)}"
            return self._http.request(method, url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise WriteError(
                f"InfluxDB at {self._base} unreachable: {exc}", retryable=True
            ) from None

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        params = {"db": self._settings.database, "precision": "ms"}
        if self._settings.retention_policy:
            params["rp"] = self._settings.retention_policy
        body = "\n".join(lines).encode("utf-8")
        response = self._request("POST", "/write", params, body)
        if response.status != 204:
            text = response.data.decode("utf-8", "replace")[:500]
            raise WriteError(
                f"InfluxDB refused the write (HTTP {response.status}): {text}",
                retryable=_is_retryable(response.status),
                status=response.status,
            )

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of the first statement (timestamps in ms)."""
        params = {"db": self._settings.database, "q": q, "epoch": "ms"}
        # InfluxDB 1.x wants POST for statements that change something.
        read_only = q.lstrip().upper().startswith(("SELECT", "SHOW"))
        response = self._request("GET" if read_only else "POST", "/query", params)
        payload = json.loads(response.data or b"{}")
        if response.status != 200 or "error" in payload:
            raise WriteError(
                f"query failed (HTTP {response.status}): {payload.get('error', payload)}",
                retryable=_is_retryable(response.status),
                status=response.status,
            )
        result = payload.get("results", [{}])[0]
        if "error" in result:
            raise WriteError(f"query failed: {result['error']}", retryable=False)
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def ensure_database(self) -> None:
        if self._settings.create_database:
            self.query(f"CREATE DATABASE {ident(self._settings.database)}")

    def close(self) -> None:
        self._http.clear()


class V2Writer:
    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self._settings = settings
        token = settings.token.get_secret_value() if settings.token else ""
        self._client = InfluxDBClient(
            url=settings.url,
            token=token,
            org=settings.org or "",
            timeout=int(settings.timeout_s * 1000),
            ssl_ca_cert=str(settings.ca_file) if settings.ca_file else None,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._precision: Any = WritePrecision.MS

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api.write(
                bucket=self._settings.bucket_name,
                org=self._settings.org or "",
                record="\n".join(lines),
                write_precision=self._precision,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            raise WriteError(
                f"InfluxDB refused the write (HTTP {status}): {str(exc.body)[:500]}",
                retryable=status == 0 or _is_retryable(status),
                status=status,
            ) from None
        except (HTTPError, OSError) as exc:
            raise WriteError(
                f"InfluxDB at {self._settings.url} unreachable: {exc}", retryable=True
            ) from None

    def ensure_database(self) -> None:
        # Buckets are provisioned by the InfluxDB 2/3 operator with their retention policy.
        return None

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def make_writer(settings: InfluxSettings) -> PointWriter:
    return V2Writer(settings) if settings.api == "v2" else V1Writer(settings)
