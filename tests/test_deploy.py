"""Dockerfile, compose stack, Kubernetes manifests and systemd unit, proven without an engine."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer

from deploy_files import (
    BIN,
    COMPOSE,
    DEPLOY,
    K8S,
    K8S_PG,
    ROOT,
    UNIT,
    assert_real_settings,
    compose,
    compose_env,
    container_of,
    deploy_config,
    dockerfile,
    dockerfile_env,
    env_example,
    env_of,
    interpolate,
    k8s_docs,
    k8s_env,
    k8s_kind,
    k8s_pg_docs,
    k8s_pg_env,
    k8s_secret_keys,
    kustomize,
    secret_text,
    unit,
    unit_env,
    yaml_docs,
)
from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import free_port
from followerwatch.poll.shard import Shard, resolve, select
from followerwatch.store.influx_v1 import InfluxV1Store

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
        "k8s postgresql": k8s_pg_env(),
        "k8s postgres": env_of(container_of(k8s_kind("StatefulSet", k8s_pg_docs()))),
        "compose followerwatch-pg": compose_env("followerwatch-pg"),
        "compose postgres": compose_env("postgres"),
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
    # Every manifest is applied by one of the two kustomizations, or is an example Secret.
    applied = [yaml.safe_dump(d) for d in kustomize(K8S) + kustomize(K8S_PG)]
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name in ("kustomization.yaml", "secret.example.yaml"):
            continue
        for doc in yaml_docs(path):
            assert yaml.safe_dump(doc) in applied, f"{path} is in no kustomization"


# --- settings: every FOLLOWERWATCH_* variable is a real, effective setting ---------------------


@pytest.mark.parametrize(
    "where",
    ["compose", "compose postgresql", "Dockerfile", "k8s", "k8s postgresql", "systemd"],
)
def test_every_followerwatch_variable_set_is_a_real_setting(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "compose": lambda: compose_env("followerwatch"),
        "compose postgresql": lambda: compose_env("followerwatch-pg"),
        "Dockerfile": dockerfile_env,
        "k8s": k8s_env,
        "k8s postgresql": k8s_pg_env,
        "systemd": unit_env,
    }[where]()
    config = deploy_config(tmp_path)
    if not where.startswith("compose"):
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
    assert kinds == ["ConfigMap", "Service", "StatefulSet"]
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
    secret_keys = set(k8s_secret_keys(K8S / "secret.example.yaml", "followerwatch-secrets"))
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


# --- PostgreSQL state: the compose profile and deploy/k8s/postgresql -------------------------

STATE_ENV = {
    "FOLLOWERWATCH_STATE__BACKEND": "postgresql",
    "FOLLOWERWATCH_STATE__DSN_FILE": "",  # where the secret is mounted: checked apart
}


def pod_spec_without(workload: dict[str, Any], *keys: str) -> dict[str, Any]:
    spec = dict(workload["spec"]["template"]["spec"])
    for key in keys:
        spec.pop(key, None)
    return spec


def test_k8s_postgresql_runs_the_same_container_as_a_deployment_over_leases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = k8s_pg_docs()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Service", "Service", "StatefulSet"]
    sts, dep = k8s_kind("StatefulSet"), k8s_kind("Deployment", docs)
    assert dep["spec"]["replicas"] >= 2 and "volumeClaimTemplates" not in dep["spec"]
    # The SQLite set's ConfigMap and Service, unchanged.
    for kind in ("ConfigMap", "Service"):
        assert k8s_kind(kind) == k8s_kind(kind, docs, k8s_kind(kind)["metadata"]["name"])
    # The same container but for its environment: no static shard, the PostgreSQL backend.
    sqlite, leased = container_of(sts), container_of(dep)
    assert {**sqlite, "env": None} == {**leased, "env": None}
    sqlite_env, env = env_of(sqlite), env_of(leased)
    assert "FOLLOWERWATCH_SERVICE__SHARD" not in env
    assert not [k for k in sqlite_env if k.startswith("FOLLOWERWATCH_STATE__")]
    expected = {k: v for k, v in sqlite_env.items() if k != "FOLLOWERWATCH_SERVICE__SHARD"}
    assert {**env, "FOLLOWERWATCH_STATE__DSN_FILE": ""} == {**expected, **STATE_ENV}
    # The data folder is scratch (an emptyDir); every other volume is the StatefulSet's.
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes.pop("data") == {"name": "data", "emptyDir": {}}
    assert list(volumes.values()) == sts["spec"]["template"]["spec"]["volumes"]
    assert pod_spec_without(dep, "containers", "volumes") == pod_spec_without(
        sts, "containers", "volumes"
    )
    # Every secret file the pod is told about, the DSN among them, is a key of the Secret.
    secret_keys = k8s_secret_keys(K8S_PG / "secret.example.yaml", "followerwatch-secrets")
    mounts = {m["name"]: m["mountPath"] for m in leased["volumeMounts"]}
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert "FOLLOWERWATCH_STATE__DSN_FILE" in files
    for value in files.values():
        directory, _, key = value.rpartition("/")
        assert directory == mounts["secrets"] and key in secret_keys, value
    # The Service scrapes the Deployment's pods, not PostgreSQL's.
    selector = k8s_kind("Service")["spec"]["selector"].items()
    assert selector <= dep["spec"]["template"]["metadata"]["labels"].items()
    postgres = k8s_kind("StatefulSet", docs)
    assert not selector <= postgres["spec"]["template"]["metadata"]["labels"].items()
    # The pods load as PostgreSQL replicas; a shard beside them would be a config error.
    for key in [k for k in os.environ if k.startswith("FOLLOWERWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.endswith("_FILE"):
            (tmp_path / key).write_text(secret_text(key))
            value = str(tmp_path / key)
        monkeypatch.setenv(key, value)
    data = k8s_kind("ConfigMap")["data"]
    for name in ("followerwatch.toml", "watchlist.toml"):
        (tmp_path / name).write_text(data[name])
    settings = load_config(tmp_path / "followerwatch.toml").settings
    assert settings.state.backend == "postgresql" and settings.service.shard == ""
    # Room to finish the poll in flight and give the leases back before the SIGKILL.
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.service.shutdown_timeout + 10
    monkeypatch.setenv("FOLLOWERWATCH_SERVICE__SHARD", "auto/3")
    with pytest.raises(Exception, match="sharding is by leases with PostgreSQL"):
        load_config(tmp_path / "followerwatch.toml")


def test_the_reference_postgresql_is_the_one_the_example_dsn_names() -> None:
    docs = k8s_pg_docs()
    postgres = k8s_kind("StatefulSet", docs)
    [service] = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] != "followerwatch"
    ]
    assert postgres["spec"]["replicas"] == 1
    assert postgres["spec"]["serviceName"] == service["metadata"]["name"]
    labels = postgres["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container = container_of(postgres)
    env = env_of(container)
    [port] = container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    # The data on the claim, the password from its own Secret (mounted, never inline).
    [claim] = postgres["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["PGDATA"].startswith(mounts[claim["metadata"]["name"]] + "/")
    directory, _, key = env["POSTGRES_PASSWORD_FILE"].rpartition("/")
    volumes = {v["name"]: v for v in postgres["spec"]["template"]["spec"]["volumes"]}
    [secret_volume] = [n for n, m in mounts.items() if m == directory]
    secret_name = volumes[secret_volume]["secret"]["secretName"]
    example = K8S_PG / "secret.example.yaml"
    password = k8s_secret_keys(example, secret_name)[key]
    # The DSN the example gives followerwatch reaches this server as its user and database.
    dsn = urlsplit(k8s_secret_keys(example, "followerwatch-secrets")["state_dsn"])
    assert dsn.scheme == "postgresql"
    assert (dsn.hostname, dsn.port) == (
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
    )
    assert (dsn.username, dsn.password) == (env["POSTGRES_USER"], password)
    assert dsn.path == "/" + env["POSTGRES_DB"]


def test_compose_postgresql_profile_runs_the_same_container_with_postgresql_state() -> None:
    services = compose()["services"]
    plain, leased, postgres = (
        services["followerwatch"],
        services["followerwatch-pg"],
        services["postgres"],
    )
    assert leased["profiles"] == postgres["profiles"] == ["postgresql"]
    assert leased["deploy"]["replicas"] >= 2
    for key in ("build", "image", "command", "restart"):
        assert leased[key] == plain[key], key
    assert leased["depends_on"] == {
        **plain["depends_on"],
        "postgres": {"condition": "service_healthy"},
    }
    env, expected = compose_env("followerwatch-pg"), compose_env("followerwatch")
    assert {**env, "FOLLOWERWATCH_STATE__DSN_FILE": ""} == {**expected, **STATE_ENV}
    secret = env["FOLLOWERWATCH_STATE__DSN_FILE"].removeprefix("/run/secrets/")
    assert leased["secrets"] == [*plain["secrets"], secret]
    # The config files, but no shared data volume: the state is in PostgreSQL.
    assert leased["volumes"] == [v for v in plain["volumes"] if v.startswith("./")]
    assert "ports" not in leased  # two replicas cannot publish one host port
    pg_env = compose_env("postgres")
    assert pg_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/" + postgres["secrets"][0]
    # The DSN the comments tell you to write names this server, user and database.
    for text in (COMPOSE.read_text(), (DEPLOY / ".env.example").read_text()):
        found = re.findall(r"postgresql://(\w+):\S+@([\w-]+):(\d+)/(\w+)", text)
        assert found and set(found) == {
            (pg_env["POSTGRES_USER"], "postgres", "5432", pg_env["POSTGRES_DB"])
        }


@pytest.mark.parametrize("folder", [K8S, K8S_PG], ids=["sqlite", "postgresql"])
def test_kubectl_kustomize_builds_what_the_tests_read(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(yaml.safe_dump(d) for d in built) == sorted(
        yaml.safe_dump(d) for d in kustomize(folder)
    )


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
