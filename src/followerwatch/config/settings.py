"""Settings (TOML file + FOLLOWERWATCH_* environment) and the watchlist; bad input → ConfigError."""

from __future__ import annotations

import gc
import itertools
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from followerwatch.alerts.routing import AlertsConfig
from followerwatch.analysis.campaign_config import CampaignConfig
from followerwatch.config.base import (
    ENV_PREFIX,
    PlatformConfig,
    RuleDefaults,
    StrictModel,
    one_line,
)
from followerwatch.config.fields import Duration, PositiveDuration, url_validator
from followerwatch.config.files import CONFIG_KEY, paths_relative_to
from followerwatch.config.state import StateConfig
from followerwatch.config.tomlfile import Unopenable, Unsplittable, toml_pieces
from followerwatch.config.tomlfile import read_toml as read_toml
from followerwatch.config.watchlist import WatchEntry, resolve_watch
from followerwatch.errors import ConfigError
from followerwatch.models import MAX_COUNT, Account
from followerwatch.notify import REGISTRY as NOTIFIERS
from followerwatch.notify import NotifierConfig
from followerwatch.notify.log import LogConfig
from followerwatch.poll.shard import validate_spec
from followerwatch.sources import REGISTRY

InfluxUrl = Annotated[
    str, BeforeValidator(url_validator("username and password_file, or token_file"))
]


class InfluxConfig(StrictModel):
    """Where points go: `v1` is /write + /query (1.x, 2.x, 3 Core); `v2` is influxdb-client."""

    transport: Literal["v1", "v2"] = "v1"
    url: InfluxUrl = "http://127.0.0.1:8086"
    database: str = "followerwatch"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    precision: Literal["s", "ms"] = "s"
    create_database: bool = False
    timeout: PositiveDuration = 10.0


class ServiceConfig(StrictModel):
    """Process-wide settings."""

    data_dir: Path = Path("data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout: Duration = 8.0
    # Points waiting for InfluxDB; past this the oldest are dropped (and counted).
    spool_cap: int = Field(default=5_000_000, ge=1000, le=MAX_COUNT)
    # Readings kept in memory while the data folder's disk is full; past it they are dropped
    # (and counted in the spool ledger's dropped_disk_full and in /metrics).
    memory_buffer: int = Field(default=100_000, ge=0, le=MAX_COUNT)
    # HOST:PORT of /healthz, /readyz and /metrics; "" turns the endpoint off.
    ops_address: str = "127.0.0.1:9108"
    # "INDEX/COUNT" or "auto/COUNT" (index from a StatefulSet pod's hostname); "" polls all.
    shard: str = ""
    # Batch polls in flight at once per platform; more wait their turn in-process, not in the
    # HTTP pool, where they would time out (a cycle starts every batch group at once).
    poll_concurrency: int = Field(default=4, ge=1, le=64)
    # Per-account /metrics series: "auto" up to 100,000 accounts (a scrape of a million takes
    # ~6 s of CPU and ~500 MB), "on" always, "off" never (service/app.py account_metrics).
    account_metrics: Literal["auto", "on", "off"] = "auto"

    @field_validator("ops_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value and (not sep or not host or not port.isdigit() or int(port) > 65535):
            raise ValueError(f"must be HOST:PORT (e.g. 0.0.0.0:9108) or empty, not {value!r}")
        return value

    @field_validator("shard")
    @classmethod
    def _shard_spec(cls, value: str) -> str:
        return validate_spec(value)


NOTIFIER_TYPES = frozenset(NOTIFIERS)


def _default_notifiers() -> list[NotifierConfig]:
    return [LogConfig()]


def _platforms_model() -> type[StrictModel]:
    fields: dict[str, Any] = {
        key: (spec.config_model | None, None) for key, spec in REGISTRY.items()
    }
    return create_model("Platforms", __base__=StrictModel, **fields)


Platforms = _platforms_model()


class Settings(BaseSettings):
    """The whole configuration; see the README for every key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Before `service`: its shard is checked against the backend (_no_static_shard).
    state: StateConfig = StateConfig()
    service: ServiceConfig = ServiceConfig()
    influxdb: InfluxConfig = InfluxConfig()
    platforms: Platforms = Platforms()  # type: ignore[valid-type]
    notifiers: list[Annotated[NotifierConfig, Field(discriminator="type")]] = Field(
        default_factory=_default_notifiers
    )
    alerts: AlertsConfig = AlertsConfig()
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    watchlist: Path | None = None
    watch: list[WatchEntry] = Field(default_factory=list)

    @field_validator("service")
    @classmethod
    def _no_static_shard(cls, value: ServiceConfig, info: ValidationInfo) -> ServiceConfig:
        state = info.data.get("state")
        if value.shard and state is not None and state.backend == "postgresql":
            raise PydanticCustomError(
                "shard",
                "sharding is by leases with PostgreSQL; remove service.shard",
                {CONFIG_KEY: "shard"},
            )
        return value

    @field_validator("notifiers")
    @classmethod
    def _unique_names(cls, value: list[NotifierConfig]) -> list[NotifierConfig]:
        names = [n.name for n in value]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise PydanticCustomError(
                "notifier_name",
                "two notifiers are named '{name}'; give each a distinct name",
                {"name": duplicate},
            )
        return value

    @field_validator("alerts")
    @classmethod
    def _known_notifiers(cls, value: AlertsConfig, info: ValidationInfo) -> AlertsConfig:
        notifiers = info.data.get("notifiers")
        if notifiers is None:
            return value  # the notifiers themselves are invalid; that error is reported
        unknown = value.unknown_notifier([n.name for n in notifiers])
        if unknown is not None:
            raise PydanticCustomError(
                "notifier_name",
                "refers to notifier '{name}', which is not configured",
                {"name": unknown},
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is passed as init data; the environment overrides it.
        return (env_settings, init_settings)

    def platform(self, key: str) -> PlatformConfig:
        """The config of one platform, defaults when the file has no section for it."""
        value = getattr(self.platforms, key)
        return value if value is not None else REGISTRY[key].config_model()

    def secrets(self) -> list[str]:
        """Every secret value in the config, for log redaction."""
        out = [self.platform(key) for key in REGISTRY]
        values = [s for cfg in out for s in cfg.secrets()]
        for secret in (self.influxdb.password, self.influxdb.token):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        for notifier in self.notifiers:
            values.extend(notifier.secrets())
        values.extend(self.state.secrets())
        return values


class Config:
    """Loaded settings plus the resolved watchlist."""

    def __init__(
        self,
        settings: Settings,
        accounts: list[Account],
        rules: dict[tuple[str, str], RuleDefaults],
        path: Path | None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.rules = rules
        self.path = path

    def accounts_for(self, platform: str) -> list[Account]:
        """The watched accounts of one platform, in watchlist order."""
        return [a for a in self.accounts if a.platform == platform]

    def by_platform(self) -> dict[str, list[Account]]:
        """The watched accounts of each platform that has any, in watchlist order (one pass)."""
        out: defaultdict[str, list[Account]] = defaultdict(list)
        for account in self.accounts:
            out[account.platform].append(account)
        return dict(out)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    Validating 100,000 entries allocates millions of objects, each allocation burst triggering
    a collection that walks every one of them again (a quarter of the load time); the load
    makes no garbage cycles worth collecting before it returns.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and resolve the config file (and its watchlist file); raise ConfigError."""
    with _gc_paused():
        return _load(path, overrides)


def _load(path: Path | None, overrides: dict[str, Any] | None) -> Config:
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    data.update(overrides or {})
    where = str(path) if path is not None else "config"
    base_dir = path.parent if path is not None else Path.cwd()
    # The entries are validated apart from the settings (and not kept in them: the accounts
    # and their rules are what the service needs, not 100,000 pydantic models).
    inline = data.pop("watch", None)
    try:
        with paths_relative_to(base_dir):
            settings = Settings(**data)
    except ValidationError as exc:
        raise one_line(exc, where, data, tags=NOTIFIER_TYPES) from None
    except SettingsError as exc:
        raise _environment_error(exc) from None
    raw: object = inline if inline is not None else list(settings.watch)
    del inline
    settings = _resolve_paths(settings.model_copy(update={"watch": []}), base_dir)
    defaults = {key: settings.platform(key).defaults for key in REGISTRY}
    if settings.watchlist is None:
        # resolve_watch consumes its lists: a copy, so a caller's `overrides` list stays
        # intact while the file's own list (referenced nowhere else) is freed as it goes.
        raw = list(raw) if isinstance(raw, list) else raw
        accounts, rules = resolve_watch([raw], defaults, where)
    else:
        wl_path = settings.watchlist
        try:
            accounts, rules = _watchlist(toml_pieces(wl_path), bool(raw), where, wl_path, defaults)
        except Unsplittable:
            whole = iter([read_toml(wl_path)])
            accounts, rules = _watchlist(whole, bool(raw), where, wl_path, defaults)
        except Unopenable as exc:
            raise ConfigError(f"{where}: watchlist: {exc}") from None
    del raw
    for key in sorted({a.platform for a in accounts}):
        pcfg = settings.platform(key)
        for secret in pcfg.required_secrets if pcfg.replay is None else ():
            if getattr(pcfg, secret) is None:
                raise ConfigError(
                    f"{where}: platforms.{key}.{secret}: required to watch {key} "
                    f"accounts (set {secret} or {secret}_file)"
                )
    return Config(settings, accounts, rules, path)


def _watchlist(
    pieces: Iterator[dict[str, Any]],
    inline: bool,
    where: str,
    path: Path,
    defaults: dict[str, RuleDefaults],
) -> tuple[list[Account], dict[tuple[str, str], RuleDefaults]]:
    """The accounts of a watchlist file, parsed piece by piece as resolve_watch goes."""
    first = next(pieces)
    unknown = set(first) - {"watch"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key (only [[watch]] here)")
    if inline:
        raise ConfigError(f"{where}: watch: set either watch entries or watchlist, not both")
    lists = itertools.chain([first.pop("watch", [])], (part["watch"] for part in pieces))
    del first
    return resolve_watch(lists, defaults, str(path))


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths in the file are relative to the file, not to the working directory."""
    service = settings.service
    if not service.data_dir.is_absolute():
        service = service.model_copy(update={"data_dir": base_dir / service.data_dir})
    watchlist = settings.watchlist
    if watchlist is not None and not watchlist.is_absolute():
        watchlist = base_dir / watchlist
    platforms: dict[str, Any] = {}
    for key in REGISTRY:
        cfg = getattr(settings.platforms, key)
        if cfg is not None and cfg.replay is not None and not cfg.replay.file.is_absolute():
            replay = cfg.replay.model_copy(update={"file": base_dir / cfg.replay.file})
            cfg = cfg.model_copy(update={"replay": replay})
        platforms[key] = cfg
    current: Any = settings.platforms
    return settings.model_copy(
        update={
            "service": service,
            "platforms": current.model_copy(update=platforms),
            "watchlist": watchlist,
        }
    )


def _environment_error(exc: SettingsError) -> ConfigError:
    """A FOLLOWERWATCH_* variable that is not the JSON its key needs, as one line."""
    match = re.search(r'field "(\w+)"', str(exc))
    prefix = (ENV_PREFIX + (match.group(1) if match else "")).upper()
    for name in sorted(os.environ):
        value = os.environ[name].strip()
        if not name.upper().startswith(prefix) or not value.startswith(("{", "[")):
            continue
        try:
            json.loads(value)
        except ValueError:
            key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            # The value itself stays out: it may hold a secret.
            return ConfigError(f"environment {name}: {key}: not valid JSON")
    return ConfigError(f"environment {prefix}*: not valid JSON")


DEFAULT_CONFIG = Path("followerwatch.toml")


class MissingConfig(ConfigError):
    """No config file where one was named, or none where a command needs one."""


def config_path_from_env(explicit: Path | None) -> Path | None:
    """The --config path, else FOLLOWERWATCH_CONFIG, else ./followerwatch.toml if it exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def find_config(explicit: Path | None, *, watchlist: bool = False) -> Path | None:
    """The config file to load, or None for defaults and the environment; MissingConfig when a
    named file does not exist, or (`watchlist`: the command needs one) when there is no file
    and the environment does not configure both InfluxDB and a watchlist."""
    path = config_path_from_env(explicit)
    if path is not None:
        try:
            problem = None if path.exists() else "no such file"
        except OSError as exc:  # a name too long for the filesystem, say
            problem = exc.strerror or type(exc).__name__
        if problem:
            # Typer reads the variable into --config: the same path there means it came from it.
            env = os.environ.get(f"{ENV_PREFIX}CONFIG")
            named_by = f"{ENV_PREFIX}CONFIG" if env and Path(env) == path else "--config"
            raise MissingConfig(f"no config at {path} (named by {named_by}; {problem})")
        return path
    if watchlist and not environment_configures():
        raise MissingConfig(f"no config at ./{DEFAULT_CONFIG} (use --config or {ENV_PREFIX}CONFIG)")
    return None


def environment_configures() -> bool:
    """Whether FOLLOWERWATCH_* variables alone set InfluxDB and a watchlist (no file needed)."""
    names = {name.upper() for name, value in os.environ.items() if value.strip()}
    influx = any(n.startswith(f"{ENV_PREFIX}INFLUXDB") for n in names)
    return influx and bool(names & {f"{ENV_PREFIX}WATCH", f"{ENV_PREFIX}WATCHLIST"})
