"""The Grafana files: generated JSON is current, loads through grafana-foundation-sdk's typed
models, and keeps the structural rules Grafana relies on; the provisioning files are consistent."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as sdk
from grafana_foundation_sdk.models import table as sdk_table
from grafana_foundation_sdk.models import timeseries as sdk_timeseries

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "followerwatch.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "followerwatch.yaml"
# Built-in Grafana variables and datasource macros a query may use besides its own variables.
BUILTINS = {"timeFilter", "__interval", "__interval_ms", "interval", "__from", "__to"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) of every panel target, annotation and query variable."""
    out = [
        (f"panel {p['id']} {t['refId']}", t["query"]) for p in board["panels"] for t in p["targets"]
    ]
    out += [(f"annotation {a['name']}", a["target"]["query"]) for a in board["annotations"]["list"]]
    out += [
        (f"variable {v['name']}", v["query"])
        for v in board["templating"]["list"]
        if v["type"] == "query"
    ]
    return out


def datasource_refs(node: Any) -> list[dict[str, Any]]:
    """Every `datasource` object anywhere in a dashboard."""
    if isinstance(node, dict):
        found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return found + [r for v in node.values() for r in datasource_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in datasource_refs(v)]
    return []


def test_the_four_dashboards_ship() -> None:
    assert [p.name for p in BOARDS] == [
        "account.json",
        "overview.json",
        "race.json",
        "service-health.json",
    ]
    uids = [load(p)["uid"] for p in BOARDS]
    assert len(set(uids)) == 4 and all(u.startswith("followerwatch-") for u in uids)


def test_regenerating_changes_nothing() -> None:
    built = generator().build()
    assert sorted(built) == [p.name for p in BOARDS]
    for path in BOARDS:
        assert path.read_text(encoding="utf-8") == built[path.name], (
            f"{path.name} is stale: run python grafana/generate.py"
        )


def test_one_schema_version() -> None:
    versions = {load(p)["schemaVersion"] for p in BOARDS}
    assert versions == {generator().SCHEMA_VERSION} == {41}  # Grafana 12


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_panel_ids_unique_and_grid_inside_24_columns_without_overlap(path: Path) -> None:
    panels = load(path)["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert set(g) == {"x", "y", "w", "h"}, p["title"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p.get("repeat") and p.get("repeatDirection") == "h":
            # Grafana lays a horizontal repeat out in a row of its own, up to maxPerRow wide.
            assert 24 % g["w"] == 0 and p.get("maxPerRow", 24 // g["w"]) * g["w"] <= 24
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for a, b in itertools.combinations(boxes, 2):
        overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
        assert not overlap, f"{a[0]!r} overlaps {b[0]!r}"


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_datasource_is_the_provisioned_one(path: Path) -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    known = {(d["type"], d["uid"]) for d in provisioned}
    board = load(path)
    refs = datasource_refs(board)
    assert refs and {(r["type"], r["uid"]) for r in refs} <= known
    # Every panel, target, variable and annotation names it (none relies on a default).
    assert all(
        "datasource" in p and all("datasource" in t for t in p["targets"]) for p in board["panels"]
    )
    assert all("datasource" in v for v in board["templating"]["list"] if v["type"] == "query")
    assert all("datasource" in a["target"] for a in board["annotations"]["list"])


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_raw_influxql_with_timefilter_and_regex_variables(path: Path) -> None:
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for p in board["panels"]:
        for t in p["targets"]:
            assert t["rawQuery"] is True and t["resultFormat"] in ("time_series", "table")
    for where, query in queries(board):
        if not where.startswith("variable"):
            # Or the range's own bounds: the Account's line query looks back before the range
            # for a line point (written every 4 h since issue 18).
            bounded = "${__from}ms" in query and "${__to}ms" in query
            assert "$timeFilter" in query or bounded, where
            assert query.lstrip().upper().startswith("SELECT"), where
        else:
            assert query.startswith("SHOW TAG VALUES FROM"), where
        assert "now()" not in query, where  # the time range comes from Grafana, never the clock
        for match in _VARIABLE.finditer(query):
            name = match.group(1) or match.group(2) or match.group(3)
            assert name in BUILTINS or name in variables, f"{where}: unknown ${name}"
            if name not in variables:
                continue
            if variables[name]["type"] == "query":
                # Tag values are only ever matched as whole, regex-escaped values.
                before = query[max(0, match.start() - 6) : match.start()]
                assert before.endswith(" =~ /^") and query[match.end() :].startswith("$/"), where
            else:
                # Free-text values (the race line) are numbers, never inside a regex.
                assert not query[: match.start()].endswith("/^"), where
    for v in variables.values():
        if v["type"] == "query":
            assert v["includeAll"] is v["multi"] and "allValue" not in v  # All = every option


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_panel_variables_and_repeats_exist(path: Path) -> None:
    board = load(path)
    names = {v["name"] for v in board["templating"]["list"]}
    for p in board["panels"]:
        if "repeat" in p:
            var = next(v for v in board["templating"]["list"] if v["name"] == p["repeat"])
            assert var["multi"], p["title"]
        for match in _VARIABLE.finditer(p["title"]):
            assert (match.group(1) or match.group(2)) in names, p["title"]


def test_account_shows_the_unusual_score_and_its_events_once() -> None:
    board = load(GRAFANA / "dashboards" / "account.json")
    [score] = [p for p in board["panels"] if p["title"] == "Unusual score"]
    [query] = [t["query"] for t in score["targets"]]
    assert query.startswith('SELECT last("unusual") AS "unusual score" FROM "followers" WHERE')
    # Directly under the counts, as wide: the score lines up with the count it belongs to.
    followers = next(p for p in board["panels"] if p["id"] == 1)["gridPos"]
    assert score["gridPos"]["y"] == followers["y"] + followers["h"]
    assert score["gridPos"]["w"] == followers["w"]
    queries = {a["name"]: a["target"]["query"] for a in board["annotations"]["list"]}
    assert set(queries) == {"Threshold events", "Unusual changes"}
    assert queries["Unusual changes"].endswith(""" AND "rule" = 'unusual'""")
    # The same events query otherwise, and the other annotation leaves the unusual rule out.
    assert queries["Threshold events"] == queries["Unusual changes"].replace(" = ", " != ")


def _missing(original: Any, loaded: Any, path: str = "") -> list[str]:
    """Paths in `original` that `loaded` lost or changed (extra defaults in `loaded` are fine)."""
    if isinstance(original, dict):
        if not isinstance(loaded, dict):
            return [path]
        out = []
        for key, value in original.items():
            if key not in loaded:
                out.append(f"{path}.{key}")
            else:
                out += _missing(value, loaded[key], f"{path}.{key}")
        return out
    if isinstance(original, list):
        if not isinstance(loaded, list) or len(original) != len(loaded):
            return [path]
        return [
            m
            for i, (a, b) in enumerate(zip(original, loaded, strict=True))
            for m in _missing(a, b, f"{path}[{i}]")
        ]
    return [] if original == loaded else [f"{path}: {original!r} != {loaded!r}"]


# The SDK types an annotation's `target` as the built-in Grafana datasource's (limit, matchAny,
# tags, type); Grafana's schema leaves it open and its InfluxDB datasource reads the InfluxQL
# query and columns from it. Only those keys may be lost in the round trip.
_ANNOTATION_TARGET = re.compile(
    r"^\.annotations\.list\[\d+\]\.target\."
    r"(refId|datasource|query|rawQuery|resultFormat|fromAnnotations|queryType|textColumn"
    r"|tagsColumn|titleColumn|timeEndColumn)$"
)


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_loads_cleanly_through_the_sdk_typed_models(path: Path) -> None:
    """grafana-foundation-sdk 1769699241 (schemaVersion 41): every key survives a round trip
    through the typed models, so no panel option, field config or variable key is unknown."""
    register_default_plugins()
    original = load(path)
    model = sdk.Dashboard.from_json(original)
    assert model.schema_version == 41 and model.uid == original["uid"]
    typed = {"timeseries": sdk_timeseries, "table": sdk_table}
    for p in model.panels or []:
        assert isinstance(p, sdk.Panel)
        module = typed[p.type_val]
        assert isinstance(p.options, module.Options), p.title
        assert p.field_config is not None
        custom = p.field_config.defaults.custom
        assert custom is not None and not isinstance(custom, dict), p.title
    loaded = json.loads(json.dumps(model, cls=JSONEncoder))
    lost = [m for m in _missing(original, loaded) if not _ANNOTATION_TARGET.match(m)]
    assert lost == []


def test_sdk_round_trip_would_catch_a_typo() -> None:
    """The round trip above is a real check: an unknown option key is lost and reported."""
    register_default_plugins()
    board = load(GRAFANA / "dashboards" / "race.json")
    board["panels"][0]["options"]["legnd"] = {"showLegend": True}
    board["panels"][0]["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 3
    loaded = json.loads(json.dumps(sdk.Dashboard.from_json(board), cls=JSONEncoder))
    assert _missing(board, loaded) == [
        ".panels[0].options.legnd",
        ".panels[0].fieldConfig.defaults.custom.lineWidht",
    ]


def _expand(text: str, env: dict[str, str]) -> str:
    """Grafana's provisioning interpolation: $VAR / ${VAR}; unset variables become ""."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def test_datasource_provisioning() -> None:
    text = DATASOURCES.read_text()
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["uid"] == generator().DATASOURCE_UID == "followerwatch-influxdb"
    assert ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["httpMode"] == "POST"
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {
        "FOLLOWERWATCH_GRAFANA_INFLUX_URL",
        "FOLLOWERWATCH_GRAFANA_INFLUX_DATABASE",
        "FOLLOWERWATCH_GRAFANA_INFLUX_USER",
        "FOLLOWERWATCH_GRAFANA_INFLUX_PASSWORD",
        "FOLLOWERWATCH_GRAFANA_INFLUX_AUTH_HEADER",
        "FOLLOWERWATCH_GRAFANA_INFLUX_TOKEN",
    }

    # InfluxDB 1.x: user and password (basic auth), no token header.
    v1 = yaml.safe_load(
        _expand(
            text,
            {
                "FOLLOWERWATCH_GRAFANA_INFLUX_URL": "http://influxdb:8086",
                "FOLLOWERWATCH_GRAFANA_INFLUX_DATABASE": "followerwatch",
                "FOLLOWERWATCH_GRAFANA_INFLUX_USER": "grafana",
                "FOLLOWERWATCH_GRAFANA_INFLUX_PASSWORD": "s3cret",
            },
        )
    )["datasources"][0]
    assert (v1["url"], v1["jsonData"]["dbName"], v1["user"]) == (
        "http://influxdb:8086",
        "followerwatch",
        "grafana",
    )
    assert v1["secureJsonData"]["password"] == "s3cret"
    assert not v1["jsonData"]["httpHeaderName1"]  # an unnamed custom header is never sent

    # InfluxDB 2.x / 3 Core: the token in an Authorization header, no user.
    v2 = yaml.safe_load(
        _expand(
            text,
            {
                "FOLLOWERWATCH_GRAFANA_INFLUX_URL": "http://influxdb3:8181",
                "FOLLOWERWATCH_GRAFANA_INFLUX_DATABASE": "followerwatch",
                "FOLLOWERWATCH_GRAFANA_INFLUX_AUTH_HEADER": "Authorization",
                "FOLLOWERWATCH_GRAFANA_INFLUX_TOKEN": "apiv3_abc",
            },
        )
    )["datasources"][0]
    assert v2["jsonData"]["httpHeaderName1"] == "Authorization"
    assert v2["secureJsonData"]["httpHeaderValue1"] == "Token apiv3_abc"
    assert not v2["user"]


def test_dashboard_provider() -> None:
    doc = yaml.safe_load(PROVIDERS.read_text())
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "followerwatch"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/followerwatch"
    assert provider["options"].get("foldersFromFilesStructure") is False
    readme = (GRAFANA / "README.md").read_text()
    assert provider["options"]["path"] in readme  # the documented mount point
