"""The `apprise` notifier: each event to any of Apprise's services (ntfy, Telegram, e-mail, …).

Apprise sends with its own HTTP stack (requests, in worker threads), not the shared httpx client,
and reports only success or failure: it cannot tell a rejected credential from an outage, so
every failure is retried. Per-URL timeouts are Apprise URL parameters (`cto`, `rto`).

An event about an account carries the chart of that account's last days as a PNG attachment; the
chart is a courtesy, so any failure to draw it sends the alert without it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.config.base import StrictModel
from followerwatch.config.files import CONFIG_KEY, read_secret_file, resolve_path
from followerwatch.errors import DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify.base import event_fields

if TYPE_CHECKING:
    import apprise as apprise_lib

    from followerwatch.analysis.charts import AccountCharts

log = structlog.get_logger("followerwatch.notify.apprise")

DEFAULT_TITLE = "followerwatch: {account} on {platform} ({kind})"
_APPRISE_LOGGER = "apprise"
_CHATTY_LOGGERS = (_APPRISE_LOGGER, "urllib3")
_TITLE_FIELDS = (
    "id",
    "time",
    "platform",
    "account",
    "rule",
    "kind",
    "value",
    "threshold",
    "message",
    "severity",
    "status",
)
# Events about the service or a campaign as a whole, not one account's count: no chart.
_NO_CHART_KINDS = frozenset(
    {
        EventKind.TEST,
        EventKind.INFLUXDB_AUTH,
        EventKind.INFLUXDB_OK,
        EventKind.SPOOL_OVERFLOW,
        EventKind.CAMPAIGN_STARTED,
        EventKind.CAMPAIGN_ENDED,
        EventKind.CAMPAIGN_REPORT,
    }
)
_SERVICE_PLATFORM = "followerwatch"


@contextlib.contextmanager
def _apprise_silenced() -> Iterator[None]:
    """Mute Apprise entirely: it logs a URL it cannot parse at ERROR, credentials and all."""
    logger = logging.getLogger(_APPRISE_LOGGER)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


class AppriseConfig(StrictModel):
    """`[[notifiers]] type = "apprise"`; `urls` (or `urls_file`, one a line) are secret."""

    type: Literal["apprise"]
    name: str = "apprise"
    urls: list[SecretStr] = Field(min_length=1)
    title: str = DEFAULT_TITLE
    attach_chart: bool = True
    chart_days: float = Field(default=7.0, gt=0, le=366)

    @model_validator(mode="before")
    @classmethod
    def _read_urls_file(cls, data: Any) -> Any:
        # StrictModel's `x_file` covers single secrets; this is its list form.
        if not isinstance(data, dict) or data.get("urls_file") in (None, ""):
            return data
        data = dict(data)
        path = resolve_path(data.pop("urls_file"), "urls_file")
        if data.get("urls"):
            raise PydanticCustomError(
                "secret_conflict", "urls and urls_file are both set; set only one"
            )
        lines = read_secret_file(path, "urls_file").splitlines()
        data["urls"] = [s for line in lines if (s := line.strip()) and not s.startswith("#")]
        if not data["urls"]:
            raise PydanticCustomError(
                "secret_file",
                "{path}: no Apprise URL in the file",
                {"path": str(path), CONFIG_KEY: "urls_file"},
            )
        return data

    @field_validator("urls")
    @classmethod
    def _valid_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        # Imported here: Apprise takes ~0.1 s to import, and most setups never use it.
        import apprise as apprise_lib

        with _apprise_silenced():
            for index, url in enumerate(value):
                plugin = apprise_lib.Apprise.instantiate(url.get_secret_value())
                # Apprise takes any port number, then fails every delivery (retried for ever).
                port = getattr(plugin, "port", None)
                if isinstance(port, int) and not 1 <= port <= 65535:
                    raise PydanticCustomError(
                        "apprise_url",
                        "urls[{index}]: the port must be a number from 1 to 65535",
                        {"index": index},
                    )
                if plugin is None:
                    # The URL itself stays out of the message: it may hold credentials.
                    raise PydanticCustomError(
                        "apprise_url",
                        "urls[{index}] is not a valid Apprise URL (unknown scheme or missing "
                        "parts)",
                        {"index": index},
                    )
        return value

    @field_validator("title")
    @classmethod
    def _valid_title(cls, value: str) -> str:
        sample = {name: 0 if name in ("value", "threshold") else "x" for name in _TITLE_FIELDS}
        try:
            value.format(**sample)
        except KeyError as exc:
            raise PydanticCustomError(
                "title",
                "title uses unknown field {field}; known: {known}",
                {"field": str(exc), "known": ", ".join(_TITLE_FIELDS)},
            ) from None
        except (ValueError, IndexError) as exc:
            raise PydanticCustomError(
                "title", "invalid title template: {reason}", {"reason": str(exc)}
            ) from None
        return value

    def secrets(self) -> list[str]:
        """Every URL (they carry tokens and passwords), and each password on its own.

        The password alone is redacted too, so a URL printed in another form (re-encoded,
        its query reordered) still never shows it.
        """
        urls = [url.get_secret_value() for url in self.urls]
        return urls + [form for url in urls for form in _password(url)]


def _password(url: str) -> list[str]:
    """The password of a URL's `user:password@` as written and decoded (none if it has none)."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    return list(dict.fromkeys(p for p in (password, unquote(password)) if p))


def charted(event: Event) -> bool:
    """Whether an event concerns one account's count, and so gets that account's chart."""
    return (
        bool(event.platform and event.account)
        and event.platform != _SERVICE_PLATFORM
        and event.kind not in _NO_CHART_KINDS
    )


def chart_filename(event: Event) -> str:
    """A safe attachment name: `followers-x-aplusk.png` (odd characters become `_`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"followers-{event.platform}-{event.account}") + ".png"


def notify_type(event: Event) -> str:
    """Apprise's notification type: success for a resolution, else by severity."""
    if event.status is EventStatus.RESOLVED:
        return "success"
    return {Severity.CRITICAL: "failure", Severity.WARNING: "warning"}.get(event.severity, "info")


class AppriseNotifier:
    """Sends each event to every configured Apprise URL; any failure is a retryable error."""

    key: ClassVar[str] = "apprise"

    def __init__(self, config: AppriseConfig, charts: AccountCharts | None = None) -> None:
        import apprise as apprise_lib

        self.name = config.name
        self._config = config
        self._charts = charts if config.attach_chart else None
        # Below WARNING, Apprise logs URL paths and headers, and urllib3 (under requests) logs
        # request lines: many services keep their tokens in exactly those places.
        for name in _CHATTY_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        self._apprise: apprise_lib.Apprise = apprise_lib.Apprise()
        with _apprise_silenced():
            for url in config.urls:
                self._apprise.add(url.get_secret_value())

    async def send(self, event: Event) -> None:
        """Deliver one event to every URL: the message as body, the `title` template as title."""
        title = self._config.title.format(**event_fields(event))
        # The directory (and the chart in it) goes once the services have read the file.
        with tempfile.TemporaryDirectory(
            prefix="followerwatch-chart-", ignore_cleanup_errors=True
        ) as directory:
            attach = await self._chart(event, Path(directory))
            result = await self._apprise.async_notify(
                body=event.message, title=title, notify_type=notify_type(event), attach=attach
            )
        if not bool(result):
            raise DeliveryError(f"apprise {self.name}: delivery to at least one URL failed")

    async def _chart(self, event: Event, directory: Path) -> apprise_lib.AppriseAttachment | None:
        """The event's chart as an attachment, or None (with one warning when it failed)."""
        if self._charts is None or not charted(event):
            return None
        import apprise as apprise_lib

        try:
            path = await self._charts.render(
                event, self._config.chart_days, directory / chart_filename(event)
            )
        except Exception as exc:  # never fail a delivery because of its chart
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("alert sent without its chart", notifier=self.name, reason=reason)
            return None
        if path is None:
            log.warning(
                "alert sent without its chart",
                notifier=self.name,
                reason=f"no counts of {event.platform}/{event.account} in InfluxDB",
            )
            return None
        return apprise_lib.AppriseAttachment(str(path))
