"""The reliability suite (every test here is marked ``reliability``; RELIABILITY.md lists each case) and its
Hypothesis settings: derandomized (the same examples on every run, so CI is repeatable and a failure reproduces with
the same command), no per-example deadline (this machine is shared and noisy), and a number of examples that keeps
the whole suite within its time budget. HYPOTHESIS_PROFILE=thorough draws more."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

HERE = Path(__file__).resolve().parent

settings.register_profile(
    "suite",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is a reliability case (the rest are marked where they live)."""
    for item in items:
        if item.path.parent == HERE:
            item.add_marker(pytest.mark.reliability)
