"""The `alertmanager` notifier: events become Prometheus Alertmanager alerts (API v2).

Label scheme. Alertmanager identifies an alert by its whole label set, so every label except
`severity` is fixed per condition (platform, account, rule):

- `alertname`: "Followerwatch" + the rule family in CamelCase, the part of the `rule` tag
  before the first ":" ("below:1000000" → "FollowerwatchBelow", "drop:5%/24h" →
  "FollowerwatchDrop", "milestones:every:100000" → "FollowerwatchMilestones");
- `platform`, `account`, `rule` (the full rule tag, e.g. "below:1000000"), `severity`;
- the account's labels, names sanitised to `[a-zA-Z_][a-zA-Z0-9_]*`, then the notifier's static
  `labels` underneath (an account label beats a static one; the labels above beat both);
- one-off (`once`) events also carry `event_id`, so each is its own alert.

`severity` is not stable within a condition: a resolving event is always `info`, and the
lifecycle rule escalates from `warning` (count hidden) to `critical` (suspended) without
resolving in between. So before posting a firing or resolving event the notifier asks
Alertmanager which alerts of that condition are active and resolves exactly those label sets,
whatever their severity. That needs no local state and survives restarts of either side, but
it means `url` must be one Alertmanager instance: for an HA cluster, configure one notifier per
instance (as Prometheus does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.clock import Clock, SystemClock
from followerwatch.config.base import StrictModel
from followerwatch.config.fields import Duration, HttpUrl, PositiveDuration, url_validator
from followerwatch.errors import DeliveryError
from followerwatch.models import MAX_COUNT, Event, EventStatus
from followerwatch.notify.base import BatchNotifier, ConcurrentNotifier, RefreshingNotifier

ALERTS_PATH = "/api/v2/alerts"
ALERTNAME_PREFIX = "Followerwatch"
# Labels the notifier sets itself; static labels may not use these names.
RESERVED_LABELS = frozenset({"alertname", "platform", "account", "rule", "severity", "event_id"})

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ERROR_TEXT_MAX = 200


class AlertmanagerConfig(StrictModel):
    """`[[notifiers]] type = "alertmanager"`; `url` is the base URL, e.g. http://127.0.0.1:9093."""

    type: Literal["alertmanager"]
    name: str = "alertmanager"
    url: Annotated[
        str, BeforeValidator(url_validator("username and password_file, or bearer_token_file"))
    ]
    timeout: PositiveDuration = 10.0
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    # Must stay below Alertmanager's `resolve_timeout` (default 5m), or active alerts flap.
    resend_interval: Duration = Field(default=60.0, gt=0)
    point_event_ttl: Duration = Field(default=3600.0, gt=0)
    generator_url: HttpUrl | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # Deliveries (accounts) in flight at once; 1 sends one event at a time, in stored order.
    concurrency: int = Field(default=16, ge=1, le=MAX_COUNT)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key in RESERVED_LABELS:
                raise PydanticCustomError(
                    "label_name",
                    "label {key} must match [a-zA-Z_][a-zA-Z0-9_]* and not be one of {reserved}",
                    {"key": repr(key), "reserved": ", ".join(sorted(RESERVED_LABELS))},
                )
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if (self.username is None) != (self.password is None):
            raise PydanticCustomError("auth", "set both username and password, or neither")
        if self.bearer_token is not None and self.username is not None:
            raise PydanticCustomError("auth", "set bearer_token or username/password, not both")
        return self

    def secrets(self) -> list[str]:
        """The bearer token and basic-auth password, if any."""
        return [s.get_secret_value() for s in (self.bearer_token, self.password) if s is not None]


def alertname(rule: str) -> str:
    """The `alertname` of a rule tag: "below:1000000" → "FollowerwatchBelow"."""
    family = rule.split(":", 1)[0]
    words = re.findall(r"[A-Za-z0-9]+", family)
    return ALERTNAME_PREFIX + "".join(w[:1].upper() + w[1:] for w in words)


def label_name(key: str) -> str:
    """`key` made a valid Alertmanager label name: other characters become "_"."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return name if name and not name[0].isdigit() else "_" + name


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _identity(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != "severity"}


def check_response(name: str, response: httpx.Response) -> None:
    """Raise DeliveryError for a failed answer: 5xx and 429 retryable, other 4xx permanent."""
    status = response.status_code
    if status < 400:
        return
    if status >= 500 or status == 429:
        raise DeliveryError(f"alertmanager {name}: HTTP {status}")
    if status in (401, 403):
        raise DeliveryError(f"alertmanager {name}: HTTP {status}, credentials refused", True)
    detail = response.text.strip()[:_ERROR_TEXT_MAX]
    raise DeliveryError(f"alertmanager {name}: HTTP {status} {detail}".rstrip(), permanent=True)


class AlertmanagerNotifier(BatchNotifier, ConcurrentNotifier, RefreshingNotifier):
    """Posts alerts to Alertmanager and re-announces active ones every `resend_interval`."""

    key: ClassVar[str] = "alertmanager"

    def __init__(
        self, config: AlertmanagerConfig, client: httpx.AsyncClient, clock: Clock | None = None
    ) -> None:
        self.name = config.name
        self.concurrency = config.concurrency
        self.resend_interval = config.resend_interval
        self._config = config
        self._client = client
        self._clock = clock or SystemClock()
        self._headers: dict[str, str] = {}
        if config.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        self._auth: httpx.BasicAuth | None = None
        if config.username is not None and config.password is not None:
            self._auth = httpx.BasicAuth(config.username, config.password.get_secret_value())

    def labels(self, event: Event) -> dict[str, str]:
        """The alert's labels for `event` (see the module docstring)."""
        labels = dict(self._config.labels)
        labels.update((label_name(k), v) for k, v in event.labels)
        labels.update(
            alertname=alertname(event.rule),
            platform=event.platform,
            account=event.account,
            rule=event.rule,
            severity=str(event.severity),
        )
        if event.status is EventStatus.ONCE:
            labels["event_id"] = event.id
        # Alertmanager drops empty labels; dropping them here keeps identities comparable.
        return {k: v for k, v in labels.items() if v}

    def annotations(self, event: Event) -> dict[str, str]:
        """The alert's annotations: the message as `summary`, plus the event's details."""
        annotations = {
            "summary": event.message,
            "value": str(event.value),
            "threshold": str(event.threshold),
            "kind": str(event.kind),
            "event_id": event.id,
        }
        if event.projection is not None:
            annotations["projection"] = event.projection.message("the count")
            annotations["projection_eta_seconds"] = str(round(event.projection.seconds))
        if event.score is not None:
            annotations["score"] = str(float(event.score))
        return annotations

    async def send(self, event: Event) -> None:
        """Deliver one event: fire, resolve, or post a one-off alert that expires by itself."""
        await self.send_many([event])

    async def send_many(self, events: Sequence[Event]) -> None:
        """Deliver events of different conditions in one POST (all or none).

        Alertmanager takes a list of alerts per request; the active alerts a firing or resolving
        event must end are looked up once per alertname in the batch.
        """
        now = self._clock.now()
        names = dict.fromkeys(alertname(e.rule) for e in events if e.status is not EventStatus.ONCE)
        active = {name: await self._active(name) for name in names}
        alerts: list[dict[str, Any]] = []
        for event in events:
            alerts += self._alerts(event, now, active.get(alertname(event.rule), []))
        if alerts:
            await self._post(alerts)

    def _alerts(
        self, event: Event, now: datetime, active: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The alerts that deliver one event, given Alertmanager's active alerts of its name."""
        # Replayed events are historical; an event "from the future" is clock skew.
        at = min(event.time, now)
        labels = self.labels(event)
        annotations = self.annotations(event)
        if event.status is EventStatus.ONCE:
            # Counted from now for replays, or a historical event would arrive already expired.
            ends = max(event.time, now) + timedelta(seconds=self._config.point_event_ttl)
            return [self._alert(labels, annotations, starts=at, ends=ends)]
        same = [a for a in active if _identity(a["labels"]) == _identity(labels)]
        if event.status is EventStatus.RESOLVED:
            # Nothing active means nothing to resolve; posting anyway could notify a stray
            # "resolved" alongside other alerts of its group.
            return [self._alert(a["labels"], annotations, ends=at) for a in same]
        alerts = [self._alert(labels, annotations, starts=at)]
        alerts += [
            self._alert(a["labels"], a.get("annotations", {}), ends=at)
            for a in same
            if a["labels"] != labels
        ]
        return alerts

    async def refresh(self, active: Sequence[Event]) -> None:
        """Re-post every still-firing condition so Alertmanager's resolve_timeout never ends it."""
        now = self._clock.now()
        alerts = [
            self._alert(self.labels(e), self.annotations(e), starts=min(e.time, now))
            for e in active
            if e.status is EventStatus.FIRING
        ]
        if alerts:
            await self._post(alerts)

    def _alert(
        self,
        labels: dict[str, str],
        annotations: dict[str, str],
        *,
        starts: datetime | None = None,
        ends: datetime | None = None,
    ) -> dict[str, Any]:
        # No startsAt on a resolution: Alertmanager keeps the earliest start it has seen.
        # No endsAt on a firing alert: Alertmanager applies resolve_timeout, which refresh renews.
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations}
        if starts is not None:
            alert["startsAt"] = _timestamp(starts)
        if ends is not None:
            alert["endsAt"] = _timestamp(ends)
        if self._config.generator_url is not None:
            alert["generatorURL"] = self._config.generator_url
        return alert

    async def _active(self, name: str) -> list[dict[str, Any]]:
        """Alertmanager's active alerts with this alertname (the rest is compared locally)."""
        # alertname is ours and plain [A-Za-z0-9], so the matcher needs no escaping.
        response = await self._request("GET", params={"filter": f'alertname="{name}"'})
        try:
            alerts = response.json()
        except ValueError:
            raise DeliveryError(f"alertmanager {self.name}: malformed alert list") from None
        if not isinstance(alerts, list):
            raise DeliveryError(f"alertmanager {self.name}: malformed alert list")
        return [a for a in alerts if isinstance(a, dict) and isinstance(a.get("labels"), dict)]

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        await self._request("POST", json=alerts)

    async def _request(self, method: str, **kwargs: Any) -> httpx.Response:
        try:
            request = self._client.build_request(
                method,
                self._config.url + ALERTS_PATH,
                headers=self._headers,
                timeout=self._config.timeout,
                **kwargs,
            )
        except Exception as exc:  # a request that cannot be built never will be: not retried
            raise DeliveryError(
                f"alertmanager {self.name}: cannot build the request ({type(exc).__name__})",
                permanent=True,
            ) from None
        try:
            response = await self._client.send(
                request, auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"alertmanager {self.name}: {type(exc).__name__}") from None
        check_response(self.name, response)
        return response
