"""The garbage collector's tuning for the data path: start-up objects frozen, young collections rare."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipeline_runtime.memory import YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rare() -> None:
    middle, old = gc.get_threshold()[1:]
    survivor = [object() for _ in range(10)]
    tune_garbage_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() >= len(survivor)
    # A batch's worth of acyclic objects no longer triggers a collection on the way.
    collections = gc.get_stats()[0]["collections"]
    batch = [{"cells": {"v": (i, i)}} for i in range(YOUNG_THRESHOLD // 4)]
    assert gc.get_stats()[0]["collections"] == collections
    assert len(batch) == YOUNG_THRESHOLD // 4
