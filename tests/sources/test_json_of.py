"""json_of gives exactly what response.json() gives, and refuses exactly what it refuses."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from followerwatch.sources.common import json_of

SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10)
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
# Texts the two parsers might read differently: edges of JSON and of Python's json module.
ODD = [
    b"",
    b"\xef\xbb\xbf{}",
    '{"a": 1}'.encode("utf-16"),
    b'["\\ud800"]',
    b'["\\ud83d\\ude00"]',
    b"[" * 300 + b"]" * 300,
    b"[NaN, Infinity, -Infinity, 1e400, -1e400]",
    b"[" + b"9" * 4301 + b"]",
    b"[" + b"9" * 4000 + b"]",
    b'{"a": 1, "a": 2}',
    b'["a\x01b"]',
    b'["\xc3\xa9", "\x7f"]',
    b"[01]",
    b"[1,]",
    b"{} x",
    b"[.5, 5.]",
    b'"\xff"',
]


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and the types alike (1 is not 1.0 nor True)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and repr(a) == repr(b)


def check(content: bytes) -> None:
    response = httpx.Response(200, content=content)
    try:
        expected = response.json()
    except ValueError:
        with pytest.raises(ValueError):
            json_of(response)
        return
    except RecursionError:
        with pytest.raises(RecursionError):
            json_of(response)
        return
    assert same(json_of(response), expected)


@given(document=DOCUMENTS, ascii_only=st.booleans())
def test_documents_parse_alike(document: Any, ascii_only: bool) -> None:
    check(json.dumps(document, ensure_ascii=ascii_only).encode())


@given(document=DOCUMENTS, cut=st.integers(0, 200), junk=st.binary(max_size=3))
def test_damaged_documents_are_refused_alike(document: Any, cut: int, junk: bytes) -> None:
    text = json.dumps(document).encode()
    check(text[:cut] + junk + text[cut:])


@pytest.mark.parametrize("content", ODD)
def test_odd_texts_parse_or_fail_alike(content: bytes) -> None:
    check(content)
