"""Helpers every fake platform server shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from werkzeug import Response

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(platform: str, name: str) -> Any:
    """A response body from tests/fixtures/<platform>/<name>."""
    return json.loads((FIXTURES / platform / name).read_text(encoding="utf-8"))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the given status and headers."""
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )
