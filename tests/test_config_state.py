"""Issue 19: the `[state]` section (SQLite or PostgreSQL), its checks and its secret DSN."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
import structlog

from followerwatch import logs
from followerwatch.config.settings import Settings, load_config
from followerwatch.config.state import StateConfig, dsn_password
from followerwatch.errors import ConfigError
from service_proc import run_cli
from test_config_missing import clean_env, one_line

PASSWORD = "pw-N0t-For-Logs"
URL = f"postgresql://followerwatch:{PASSWORD}@db.example:5432/followerwatch"
WATCH = '[[watch]]\nplatform = "github"\nhandle = "torvalds"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "followerwatch.toml"
    path.write_text(WATCH + text)
    return path


def load_error(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(folder, text))
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_defaults_are_sqlite_64_shards_and_a_ttl_of_three_intervals_at_least_30s() -> None:
    state = Settings().state
    assert state.backend == "sqlite" and state.dsn is None
    assert state.shards == 64 and state.lease_ttl is None and state.max_pending == 100_000
    assert state.lease_ttl_for(300) == 900
    assert state.lease_ttl_for(5) == 30  # three 5 s intervals would be 15 s
    assert state.lease_ttl_for(10) == 30 and state.lease_ttl_for(11) == 33
    short = StateConfig(backend="postgresql", dsn=URL, lease_ttl="2s")  # type: ignore[arg-type]
    assert short.lease_ttl == 2.0 and short.lease_ttl_for(300) == 2.0
    assert StateConfig().secrets() == []


def test_postgresql_from_the_file_with_dsn_inline_or_dsn_file(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\nshards = 16\n'
            'lease_ttl = "3s"\nmax_pending = 500\n',
        )
    )
    state = config.settings.state
    assert state.backend == "postgresql" and state.dsn is not None
    assert state.dsn.get_secret_value() == URL
    assert (state.shards, state.lease_ttl, state.max_pending) == (16, 3.0, 500)
    # dsn_file: relative to the config's folder, trailing newline dropped, as every *_file.
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "dsn").write_text("host=db dbname=fw user=fw password=x1y2z3\n")
    config = load_config(
        write(tmp_path, '[state]\nbackend = "postgresql"\ndsn_file = "secrets/dsn"\n')
    )
    dsn = config.settings.state.dsn
    assert dsn is not None and dsn.get_secret_value() == "host=db dbname=fw user=fw password=x1y2z3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[state]\nbackend = "postgresql"\n',
            'state.dsn: required with backend = "postgresql" (set dsn or dsn_file)',
        ),
        (
            f'[state]\ndsn = "{URL}"\n',
            'state.dsn: is only used with backend = "postgresql"; set that backend or remove dsn',
        ),
        (
            f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\n[service]\nshard = "0/2"\n',
            "service.shard: sharding is by leases with PostgreSQL; remove service.shard",
        ),
        (
            f'[state]\nbackend = "postgresql"\ndsn = "mysql://u:{PASSWORD}@db/fw"\n',
            "state.dsn: must be a postgresql:// URL or a libpq key=value string",
        ),
        (
            f'[state]\nbackend = "postgresql"\ndsn = "{PASSWORD}"\n',
            "state.dsn: must be a postgresql:// URL or a libpq key=value string"
            " (host=... dbname=...)",
        ),
        (
            f'[state]\nbackend = "postgresql"\ndsn = "postgresql://u:{PASSWORD}@db:99999/fw"\n',
            "state.dsn: the port must be a number from 1 to 65535",
        ),
        (
            f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\ndsn_file = "dsn"\n',
            "state: dsn and dsn_file are both set; set only one",
        ),
        ('[state]\nbackend = "mysql"\n', "state.backend: Input should be 'sqlite' or 'postgresql'"),
        ("[state]\nshards = 0\n", "state.shards: Input should be greater than or equal to 1"),
        ("[state]\nshards = 1025\n", "state.shards: Input should be less than or equal to 1024"),
        ('[state]\nlease_ttl = "500ms"\n', "state.lease_ttl: Value error, must be at least 1s"),
        ("[state]\nmax_pending = -1\n", "state.max_pending: Input should be greater than or equal"),
        ("[state]\nleases = 3\n", "state.leases: Extra inputs are not permitted"),
    ],
)
def test_each_mistake_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'followerwatch.toml'}: {expected}"), message
    assert PASSWORD not in message


def test_a_shard_from_the_environment_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWERWATCH_SERVICE__SHARD", "auto/3")
    message = load_error(tmp_path, f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\n')
    assert message == (
        "environment FOLLOWERWATCH_SERVICE__SHARD: service.shard: "
        "sharding is by leases with PostgreSQL; remove service.shard"
    )
    # An empty shard is no shard: PostgreSQL is fine with it.
    monkeypatch.setenv("FOLLOWERWATCH_SERVICE__SHARD", "")
    load_config(write(tmp_path, f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\n'))


def test_the_cli_exits_2_with_one_line_and_never_prints_the_password(tmp_path: Path) -> None:
    bad_port = f"postgresql://fw:{PASSWORD}@db:99999/fw"
    config = write(tmp_path, f'[state]\ndsn = "{bad_port}"\nbackend = "postgresql"\n')
    result = run_cli("check", "-c", str(config), env=clean_env())
    assert one_line(result).endswith("state.dsn: the port must be a number from 1 to 65535")
    assert PASSWORD not in result.stdout + result.stderr
    # A good DSN with a static shard: the error is about the shard, the DSN stays out.
    config = write(tmp_path, f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\n')
    result = run_cli("poll", "-c", str(config), "--shard", "0/2", env=clean_env())
    assert one_line(result) == (
        "followerwatch: invalid --shard: sharding is by leases with PostgreSQL; remove --shard"
    )
    assert PASSWORD not in result.stdout + result.stderr
    # The same DSN from a file, given through the environment, with the backend left out.
    (tmp_path / "dsn").write_text(f"host=db password='{PASSWORD}'\n")
    result = run_cli(
        "check",
        "-c",
        str(write(tmp_path, "")),
        env=clean_env(FOLLOWERWATCH_STATE__DSN_FILE=str(tmp_path / "dsn")),
    )
    assert one_line(result) == (
        "followerwatch: invalid config: environment FOLLOWERWATCH_STATE__DSN_FILE: state.dsn: "
        'is only used with backend = "postgresql"; set that backend or remove dsn'
    )
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "dsn",
    [
        URL,
        "postgresql://fw:p%40ss%20word@db/fw",
        "postgres://fw@db/fw",
        "host=db dbname=fw password=plainpw",
        "host=db password = 'sp ace' dbname=fw",
        r"host=db password='with \'quote\' and space' dbname=fw",
        "password=first host=db",
        "host=db dbname=fw",
    ],
)
def test_the_password_found_for_redaction_is_the_one_libpq_reads(dsn: str) -> None:
    expected: Any = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    assert dsn_password(dsn) == expected


def test_logs_redact_the_dsn_and_its_password(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'[state]\nbackend = "postgresql"\ndsn = "{URL}"\n'))
    secrets = config.settings.secrets()
    assert URL in secrets and PASSWORD in secrets
    stream = io.StringIO()
    logs.register_secrets(secrets)
    logs.configure("info", "json", stream)
    structlog.get_logger("followerwatch.test").warning(
        "state database down", dsn=URL, error=f'password authentication failed: "{PASSWORD}"'
    )
    assert PASSWORD not in stream.getvalue() and "***" in stream.getvalue()


def test_a_real_servers_dsn_in_either_form_loads_and_connects(tmp_path: Path, pg_dsn: str) -> None:
    parts = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    url = f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
    for n, dsn in enumerate((pg_dsn, url)):
        (tmp_path / f"dsn{n}").write_text(dsn + "\n")
        config = load_config(
            write(tmp_path, f'[state]\nbackend = "postgresql"\ndsn_file = "dsn{n}"\n')
        )
        loaded = config.settings.state.dsn
        assert loaded is not None
        with psycopg.connect(loaded.get_secret_value(), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (parts["dbname"],)
