"""The service's garbage-collector setting holds only while it runs."""

from __future__ import annotations

import gc

import pytest

from followerwatch.service.heap import YOUNG_THRESHOLD, settled_heap


def test_young_collections_are_rarer_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with settled_heap():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        assert gc.isenabled()  # cycles are still collected
    assert gc.get_threshold() == before


def test_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), settled_heap():
        raise RuntimeError("the service stopped with an error")
    assert gc.get_threshold() == before
