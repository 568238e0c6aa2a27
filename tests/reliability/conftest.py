"""The reliability suite's Hypothesis settings: derandomized (the same examples on every run, so CI is repeatable and
a failure reproduces with the same command), no per-example deadline (this machine is shared and noisy), and a
number of examples that keeps the whole suite within its time budget. HYPOTHESIS_PROFILE=thorough draws more."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
