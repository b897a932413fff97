"""A canary secret through every failure path, at DEBUG: it must appear nowhere in the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

CANARY = "CANARY-7f3a9c-do-not-print"


def poll(config: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "followerwatch", "poll", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    return result.stdout + result.stderr


def write_config(tmp_path: Path, influx: tuple[str, str], platform: str, base: str) -> Path:
    section = {
        "x": f'bearer_token = "{CANARY}"\nbase_url = "{base}"\nmax_wait = "1s"',
        "youtube": f'api_key = "{CANARY}"\nbase_url = "{base}"\nmax_wait = "1s"',
    }[platform]
    handle = {"x": "aplusk", "youtube": "UC_x5XG1OV2P6uZZ5FSM9Ttw"}[platform]
    path = tmp_path / "fw.toml"
    path.write_text(f"""
[service]
data_dir = "data"
log_level = "debug"
log_format = "json"
[influxdb]
url = "{influx[0]}"
database = "{influx[1]}"
password = "{CANARY}-influx"
username = "someone"
[platforms.{platform}]
{section}
[[notifiers]]
type = "webhook"
url = "{base}/hook"
secret = "{CANARY}-hmac"
[[watch]]
platform = "{platform}"
handle = "{handle}"
""")
    return path


ANSWERS = [
    (401, '{"title":"Unauthorized","status":401,"detail":"Unauthorized"}'),
    (500, "<html>Internal error for key=" + CANARY + "</html>"),
    (200, '{"data": [{"id": "1", "username": "aplusk", "public_metrics": "garbage"}]}'),
    (200, '{"items": [{"id": '),
    (429, '{"errors":[{"code":88,"message":"Rate limit exceeded"}]}'),
]


@pytest.mark.parametrize("platform", ["x", "youtube"])
@pytest.mark.parametrize(
    ("status", "body"), ANSWERS, ids=[f"{a[0]}-{i}" for i, a in enumerate(ANSWERS)]
)
def test_canary_never_printed(
    tmp_path: Path,
    influx_db: tuple[str, str],
    httpserver: HTTPServer,
    platform: str,
    status: int,
    body: str,
) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=500)
    httpserver.expect_request("").respond_with_data(
        body, status=status, content_type="application/json"
    )
    output = poll(write_config(tmp_path, influx_db, platform, httpserver.url_for("").rstrip("/")))
    assert "Traceback" not in output
    assert CANARY not in output
    assert output.strip()  # the failure was reported, just without the secret


def test_canary_not_in_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "fw.toml"
    path.write_text(f'[platforms.x]\nbearer_token = "{CANARY}"\ninterval = "{CANARY}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "followerwatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and CANARY not in result.stdout + result.stderr
