"""The native InfluxDB 2.x / Cloud transport (`/api/v2/write`) through influxdb-client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, cast

from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError as Urllib3Error

from followerwatch.errors import StoreError
from followerwatch.models import Point
from followerwatch.store.influx_v1 import (
    chunk_lines,
    encode_points,
    error_for_status,
    redact_url,
)
from followerwatch.store.lineprotocol import PRECISIONS

_MAX_ERROR_CHARS = 300


def _error_text(exc: InfluxDBError) -> str:
    message: Any = getattr(exc, "message", None)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
        try:
            decoded = json.loads(message)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            message = decoded["message"]
    text = " ".join(str(message or "no details").split())
    return text[:_MAX_ERROR_CHARS] + ("..." if len(text) > _MAX_ERROR_CHARS else "")


class InfluxV2Store:
    """Writes to a 2.x/Cloud bucket with influxdb-client's synchronous API, off the event loop."""

    def __init__(
        self,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str,
        precision: str = "s",
        timeout_s: float = 10.0,
        max_batch_lines: int = 5000,
        enable_gzip: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unsupported precision {precision!r}; use one of {list(PRECISIONS)}")
        if max_batch_lines < 1:
            raise ValueError("max_batch_lines must be at least 1")
        self.display_url = redact_url(url.rstrip("/"))
        self.org = org
        self.bucket = bucket
        self.precision = precision
        self.max_batch_lines = max_batch_lines
        # retries=False: our pipeline owns retries and durability; the client's own retry
        # loops would hold a worker thread and hide failures from it.
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=enable_gzip,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._write_service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self._what = f"write to {self.display_url} (org {org!r}, bucket {bucket!r})"

    async def write(self, points: Sequence[Point]) -> None:
        """Write points in chunks; if one fails, earlier ones stay written (replays overwrite)."""
        await self.write_lines(encode_points(points, self.precision))

    async def write_lines(self, lines: Sequence[str]) -> None:
        """Write already-encoded line protocol (at this store's precision) in chunks."""
        if not lines:
            return
        for body in chunk_lines(lines, self.max_batch_lines):
            await asyncio.to_thread(self._call, self._write_body, body.encode("utf-8"))

    async def check(self) -> None:
        """Verify the server answers and the token may write to the org and bucket."""
        await asyncio.to_thread(self._call, self._empty_write)

    async def close(self) -> None:
        """Release the client's connection pool."""
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]

    def _write_body(self, body: bytes) -> None:
        # Our own line protocol (validated, escaped, sorted) goes in as raw bytes: the client
        # neither re-parses nor re-escapes it, and its Point would be ~20x slower to build.
        self._write_api.write(
            bucket=self.bucket,
            org=self.org,
            record=body,
            write_precision=cast(WritePrecision, self.precision),
        )

    def _empty_write(self) -> None:
        # An empty write is the cheapest call that proves what matters: 2.x checks the token,
        # the org, the bucket and the write permission before it looks at the body, and only
        # then answers 400 "writing requires points". So 204/400 mean "authorised".
        try:
            self._write_service.post_write(  # type: ignore[no-untyped-call]
                org=self.org,
                bucket=self.bucket,
                body=b"",
                precision=self.precision,
                content_type="text/plain; charset=utf-8",
            )
        except InfluxDBError as exc:
            if getattr(exc, "status", None) == 400:
                return
            raise

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            if not isinstance(status, int):
                raise StoreError(f"{self._what}: {_error_text(exc)}", retryable=True) from exc
            error = error_for_status(status, self._what, _error_text(exc))
            # influxdb-client already parses `Retry-After` (503, and 429 on Cloud).
            retry_after = getattr(exc, "retry_after", None)
            error.retry_after = float(retry_after) if isinstance(retry_after, int | float) else None
            raise error from exc
        except (Urllib3Error, OSError) as exc:
            # urllib3 messages name the host and path, never the Authorization header.
            reason = " ".join(str(exc).split())[:_MAX_ERROR_CHARS]
            raise StoreError(
                f"{self._what}: cannot reach the server ({type(exc).__name__}: {reason})",
                retryable=True,
            ) from exc
