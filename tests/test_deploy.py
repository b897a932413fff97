"""Dockerfile, compose stack, Kubernetes manifests and systemd unit, proven without an engine."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import Settings, load_config
from followerwatch.demo.influxd import free_port
from followerwatch.poll.shard import Shard, resolve, select
from followerwatch.store.influx_v1 import InfluxV1Store

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "followerwatch.service"
BIN = Path(sys.executable).parent
# Read by the CLI, not the settings model.
NOT_SETTINGS = {"FOLLOWERWATCH_CONFIG"}


# --- parsing helpers -------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage."""
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    env: dict[str, str] = {}
    for word, rest in steps[last_from:]:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR}, from .env.example."""

    def one(match: re.Match[str]) -> str:
        name, _, default = match[1].partition(":-")
        return variables.get(name, default)

    return re.sub(r"\$\{([^}]+)\}", one, value)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_env(service: str) -> dict[str, str]:
    variables = env_example()
    env = compose()["services"][service].get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {k: interpolate(str(v), variables) for k, v in env.items()}


def k8s_docs() -> list[dict[str, Any]]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def k8s_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for d in k8s_docs() if d["kind"] == kind]
    return doc


def k8s_env() -> dict[str, str]:
    [container] = k8s_kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def unit_env() -> dict[str, str]:
    env = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


# --- compose ---------------------------------------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_validates_against_the_compose_spec(tmp_path: Path) -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator does reject what the spec forbids (so the pass above means something).
    broken = compose()
    broken["services"]["followerwatch"]["restart_policy"] = "always"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(broken))
    result = check_jsonschema(bad)
    assert result.returncode == 1 and "restart_policy" in result.stdout


def test_compose_stack_has_influxdb_grafana_alertmanager_and_followerwatch() -> None:
    services = compose()["services"]
    variables = env_example()
    assert interpolate(services["influxdb"]["image"], variables).startswith("influxdb:2.7")
    influx = compose_env("influxdb")
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"].startswith("/run/secrets/")
    assert "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" not in influx  # only through the secret file
    assert (
        influx["DOCKER_INFLUXDB_INIT_BUCKET"]
        == compose_env("followerwatch")["FOLLOWERWATCH_INFLUXDB__DATABASE"]
    )
    assert services["alertmanager"]["profiles"] == ["alerting"]
    assert "profiles" not in services["followerwatch"]
    # Grafana gets every variable its datasource file expands (the token via its entrypoint).
    datasource = (ROOT / "grafana/provisioning/datasources/followerwatch.yaml").read_text()
    expected = set(re.findall(r"\$\{(FOLLOWERWATCH_GRAFANA_[A-Z_]+)\}", datasource))
    given = set(compose_env("grafana")) | set(
        re.findall(r"export (\w+)=", " ".join(services["grafana"]["entrypoint"]))
    )
    # USER and PASSWORD are for InfluxDB 1.x; 2.7 authenticates with the token header.
    assert expected - given == {
        "FOLLOWERWATCH_GRAFANA_INFLUX_USER",
        "FOLLOWERWATCH_GRAFANA_INFLUX_PASSWORD",
    }
    targets = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert {
        "/etc/grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards",
        "/var/lib/grafana/dashboards/followerwatch",
    } <= targets


def test_no_secret_value_is_set_anywhere_only_files() -> None:
    secretish = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY)$")
    sources = {
        "compose followerwatch": compose_env("followerwatch"),
        "compose influxdb": compose_env("influxdb"),
        "compose grafana": compose_env("grafana"),
        "Dockerfile": dockerfile_env(),
        "k8s": k8s_env(),
        "systemd": unit_env(),
        ".env.example": env_example(),
    }
    for where, env in sources.items():
        for key in env:
            assert not secretish.search(key), f"{where} sets {key}; use {key}_FILE"
    declared = compose()["secrets"]
    for name, service in compose()["services"].items():
        for secret in service.get("secrets", []):
            assert secret in declared, (name, secret)
    for spec in declared.values():
        path = (DEPLOY / spec["file"]).resolve()
        assert path.parent == DEPLOY / "secrets"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/secrets/x_bearer_token"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "deploy/secrets/ must be ignored by git"


def test_every_mounted_or_copied_repository_path_exists() -> None:
    checked = 0
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
                checked += 1
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()
    assert checked >= 6
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile: COPY {source}"
    for resource in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]:
        assert (K8S / resource).is_file()


# --- settings: every FOLLOWERWATCH_* variable is a real, effective setting ---------------------


def _setting(settings: Settings, parts: list[str]) -> Any:
    node: Any = settings
    for i, part in enumerate(parts):
        if i == 1 and parts[0] == "platforms":
            node = settings.platform(part)
        elif i > 0 or part != "platforms":
            assert part in type(node).model_fields, f"{'.'.join(parts)} is not a setting"
            node = getattr(node, part)
    return node


def assert_real_settings(
    env: dict[str, str], config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load the settings with `env`; each variable must land in the setting it names."""
    for key in [k for k in os.environ if k.startswith("FOLLOWERWATCH_")]:
        monkeypatch.delenv(key)
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    applied: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith("FOLLOWERWATCH_") or key in NOT_SETTINGS:
            continue
        if key.endswith("_FILE"):
            # Stands in for the mounted secret; its content proves the file was read.
            value = str(secrets / key.lower())
            Path(value).write_text(f"secret-{key.lower()}\n")
        applied[key] = value
        monkeypatch.setenv(key, value)
    assert applied
    settings = load_config(config).settings
    for key, value in applied.items():
        parts = key.removeprefix("FOLLOWERWATCH_").lower().split("__")
        if parts[-1].endswith("_file"):
            parts[-1] = parts[-1].removesuffix("_file")
            assert _setting(settings, parts).get_secret_value() == f"secret-{key.lower()}", key
        else:
            assert str(_setting(settings, parts)) == value, key


def deploy_config(tmp_path: Path) -> Path:
    for name in ("followerwatch.toml", "watchlist.toml"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    return tmp_path / "followerwatch.toml"


@pytest.mark.parametrize("where", ["compose", "Dockerfile", "k8s", "systemd"])
def test_every_followerwatch_variable_set_is_a_real_setting(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "compose": lambda: compose_env("followerwatch"),
        "Dockerfile": dockerfile_env,
        "k8s": k8s_env,
        "systemd": unit_env,
    }[where]()
    config = deploy_config(tmp_path)
    if where != "compose":
        # The Dockerfile and the unit set no credentials; the config needs X's.
        env.setdefault("FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN_FILE", "-")
    assert_real_settings(env, config, tmp_path, monkeypatch)


def test_a_misspelt_variable_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN_FILE": "-",
        "FOLLOWERWATCH_SERVICE__DATADIR": "/data",
    }
    with pytest.raises(Exception, match=r"(?i)datadir"):
        assert_real_settings(env, deploy_config(tmp_path), tmp_path, monkeypatch)


# --- Kubernetes ------------------------------------------------------------------------------


def test_k8s_manifests_parse_and_shard_by_pod_ordinal(tmp_path: Path) -> None:
    kinds = sorted(d["kind"] for d in k8s_docs())
    assert kinds == ["ConfigMap", "Kustomization", "Secret", "Service", "StatefulSet"]
    sts = k8s_kind("StatefulSet")
    replicas = sts["spec"]["replicas"]
    env = k8s_env()
    assert env["FOLLOWERWATCH_SERVICE__SHARD"] == f"auto/{replicas}"
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    port = int(env["FOLLOWERWATCH_SERVICE__OPS_ADDRESS"].rsplit(":", 1)[1])
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = k8s_kind("Service")
    assert (
        service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["metadata"]["name"] == sts["spec"]["serviceName"]
    assert service["spec"]["ports"][0]["port"] == port
    # Every secret file the pod is told about is a key of the Secret it mounts.
    secret_keys = set(k8s_kind("Secret")["stringData"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for key, value in env.items():
        if key.endswith("_FILE"):
            assert value.startswith(mounts["secrets"] + "/")
            assert value.rsplit("/", 1)[1] in secret_keys
    # The ConfigMap is the same config as deploy/, and loads.
    data = k8s_kind("ConfigMap")["data"]
    for name in ("followerwatch.toml", "watchlist.toml"):
        assert tomllib.loads(data[name]) == tomllib.loads((DEPLOY / name).read_text())
        (tmp_path / name).write_text(data[name])
    token = tmp_path / "x"
    token.write_text("t")
    config = load_config(
        tmp_path / "followerwatch.toml", {"platforms": {"x": {"bearer_token_file": str(token)}}}
    )
    # The pods followerwatch-0 .. -(N-1) split the watchlist between them, none twice.
    shards = [resolve(f"auto/{replicas}", hostname=f"followerwatch-{i}") for i in range(replicas)]
    assert shards == [Shard(i, replicas) for i in range(replicas)]
    parts = [select(config.accounts, shard) for shard in shards]
    assert sorted(a.name for p in parts for a in p) == sorted(a.name for a in config.accounts)


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    service = unit()["Service"]
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "followerwatch",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, key
    assert unit_env()["FOLLOWERWATCH_SERVICE__DATA_DIR"] == "/var/lib/" + service["StateDirectory"]
    credential = service["LoadCredential"].split(":")[0]
    assert unit_env()["FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN_FILE"] == f"%d/{credential}"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # Verify the unit as written, with ExecStart pointed at this checkout's command.
    exe = BIN / "followerwatch"
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={exe}", UNIT.read_text())
    copy = tmp_path / "followerwatch.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile and the container's command, run here ----------------------------------------


def test_dockerfile_is_multistage_slim_nonroot_with_a_healthcheck() -> None:
    steps = dockerfile()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms)
    [user] = [rest for word, rest in steps if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    [volume] = [rest for word, rest in steps if word == "VOLUME"]
    assert set(json.loads(volume)) == {"/config", "/data"}
    env = dockerfile_env()
    port = env["FOLLOWERWATCH_SERVICE__OPS_ADDRESS"].rsplit(":", 1)[1]
    [health] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}/healthz" in health
    assert [rest for word, rest in steps if word == "EXPOSE"] == [port]
    assert env["FOLLOWERWATCH_SERVICE__DATA_DIR"] == "/data"
    assert env["FOLLOWERWATCH_CONFIG"].startswith("/config/")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "deploy/secrets" in ignored and ".venv" in ignored


def container_command() -> list[str]:
    steps = dockerfile()
    [entrypoint] = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    command = compose()["services"]["followerwatch"].get("command")
    if command is None:
        [command] = [json.loads(rest) for word, rest in steps if word == "CMD"]
    return [*entrypoint, *command]


def container_env(tmp_path: Path) -> dict[str, str]:
    """The container's environment, its paths mapped onto folders here (as its mounts are)."""
    config, data, secrets = tmp_path / "config", tmp_path / "data", tmp_path / "secrets"
    for folder in (config, data, secrets):
        folder.mkdir()
    for volume in compose()["services"]["followerwatch"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            shutil.copy(DEPLOY / source, config / Path(target).relative_to("/config"))
    for name in compose()["services"]["followerwatch"]["secrets"]:
        (secrets / name).write_text(TOKEN if name == "x_bearer_token" else "influx-token\n")
    mapping = {
        "/config": str(config),
        "/data": str(data),
        "/run/secrets": str(secrets),
        "/opt/followerwatch/bin": str(BIN),
    }
    env = {**dockerfile_env(), **compose_env("followerwatch")}
    for key, value in env.items():
        for inside, here in mapping.items():
            if value == inside or value.startswith(inside + "/") or value.startswith(inside + ":"):
                value = here + value[len(inside) :]
        env[key] = value.replace("$PATH", os.environ["PATH"])
    return env


async def test_the_container_command_checks_then_runs_against_the_real_influxd(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    for i, handle in enumerate(("aplusk", "cnnbrk")):
        user = make_user(i)
        user["username"] = handle
        fake.add(user)
    env = container_env(tmp_path)
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWERWATCH_")}
    env = {
        **base_env,
        **env,
        # The only differences from the container: hosts and ports that exist here.
        "FOLLOWERWATCH_INFLUXDB__URL": influx_db[0],
        "FOLLOWERWATCH_INFLUXDB__DATABASE": influx_db[1],
        "FOLLOWERWATCH_PLATFORMS__X__BASE_URL": fake.base_url,
        "FOLLOWERWATCH_SERVICE__OPS_ADDRESS": f"127.0.0.1:{port}",
    }
    command = container_command()
    assert command == ["followerwatch", "run"]
    exe = shutil.which(command[0], path=env["PATH"])
    assert exe is not None and Path(exe).parent == BIN
    cwd = tmp_path / "data"

    check = subprocess.run(
        [exe, "check"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "InfluxDB reachable" in check.stdout and "2 accounts" in check.stdout

    proc = subprocess.Popen(
        [exe, *command[1:]],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        healthy = False
        while time.monotonic() < deadline and not (healthy and fake.seen):
            with contextlib.suppress(httpx.TransportError):
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            time.sleep(0.2)
        assert healthy and fake.seen
        async with httpx.AsyncClient() as client:
            store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
            for _ in range(100):
                series = await store.query("SELECT last(followers) FROM followers GROUP BY account")
                if len(series) == 2:
                    break
                time.sleep(0.1)
        assert {s["tags"]["account"] for s in series} == {"aplusk", "CNN Breaking News"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert (tmp_path / "data" / "state.sqlite3").exists()  # state went to the /data volume
    assert "Traceback" not in out and TOKEN not in out
