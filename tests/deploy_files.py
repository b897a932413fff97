"""The deployment files as data: Dockerfile, compose, Kubernetes (as kustomize builds), systemd."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from followerwatch.config.settings import Settings, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
K8S_PG = K8S / "postgresql"
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


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize(folder: Path = K8S, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """What `kubectl apply -k folder` creates: its resources, bases followed (no patches)."""
    assert folder not in seen, f"{folder}: a kustomization cycle"
    [kustomization] = yaml_docs(folder / "kustomization.yaml")
    # Only what this builder understands: anything more would be silently ignored here.
    assert set(kustomization) <= {"apiVersion", "kind", "resources"}, folder
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = (folder / resource).resolve()
        if path.is_dir():
            docs.extend(kustomize(path, (*seen, folder)))
        else:
            assert path.is_file(), f"{folder}: {resource} does not exist"
            docs.extend(yaml_docs(path))
    return docs


def k8s_docs() -> list[dict[str, Any]]:
    """The SQLite set (deploy/k8s): the StatefulSet, ConfigMap and Service."""
    return kustomize(K8S)


def k8s_pg_docs() -> list[dict[str, Any]]:
    """The PostgreSQL set (deploy/k8s/postgresql): the Deployment and a reference PostgreSQL."""
    return kustomize(K8S_PG)


def k8s_kind(kind: str, docs: list[dict[str, Any]] | None = None, name: str = "") -> dict[str, Any]:
    [doc] = [
        d
        for d in (k8s_docs() if docs is None else docs)
        if d["kind"] == kind and (not name or d["metadata"]["name"] == name)
    ]
    return doc


def k8s_secret_keys(path: Path, name: str) -> dict[str, str]:
    """The keys of the example Secret `name` in `path` (the real one is made outside git)."""
    [secret] = [
        d for d in yaml_docs(path) if d["kind"] == "Secret" and d["metadata"]["name"] == name
    ]
    keys: dict[str, str] = secret["stringData"]
    return keys


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def k8s_env() -> dict[str, str]:
    return env_of(container_of(k8s_kind("StatefulSet")))


def k8s_pg_env() -> dict[str, str]:
    return env_of(container_of(k8s_kind("Deployment", k8s_pg_docs())))


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


def secret_text(variable: str) -> str:
    """A stand-in secret for a `*_FILE` variable, of the shape its setting needs."""
    text = f"secret-{variable.lower()}"
    return f"host=postgres password={text}" if variable.endswith("_DSN_FILE") else text


def setting_at(settings: Settings, parts: list[str]) -> Any:
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
            Path(value).write_text(secret_text(key) + "\n")
        applied[key] = value
        monkeypatch.setenv(key, value)
    assert applied
    settings = load_config(config).settings
    for key, value in applied.items():
        parts = key.removeprefix("FOLLOWERWATCH_").lower().split("__")
        if parts[-1].endswith("_file"):
            parts[-1] = parts[-1].removesuffix("_file")
            assert setting_at(settings, parts).get_secret_value() == secret_text(key), key
        else:
            assert str(setting_at(settings, parts)) == value, key


def deploy_config(tmp_path: Path) -> Path:
    for name in ("followerwatch.toml", "watchlist.toml"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    return tmp_path / "followerwatch.toml"
