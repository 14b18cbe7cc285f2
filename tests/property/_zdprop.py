"""Shared settings and helpers of the property suite (imported by conftest.py
and the test modules; see conftest.py for the profiles)."""
from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(
    deadline=None,              # segment creation and spawn vary a lot
    print_blob=True,            # failures print @reproduce_failure(...)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

if os.environ.get("ZDSHM_HYPOTHESIS_NO_SHRINK"):
    # For tests/mutation/run.py: a failure is all it needs, not the smallest.
    _COMMON["phases"] = [Phase.explicit, Phase.reuse, Phase.generate]

settings.register_profile("dev", max_examples=200, stateful_step_count=30, **_COMMON)
settings.register_profile("ci", max_examples=2000, stateful_step_count=30, **_COMMON)
settings.register_profile("heavy", max_examples=20000, stateful_step_count=40, **_COMMON)

PROFILE_NAME = os.environ.get("ZDSHM_HYPOTHESIS_PROFILE", "ci")
if PROFILE_NAME not in ("dev", "ci", "heavy"):
    raise RuntimeError(
        f"ZDSHM_HYPOTHESIS_PROFILE must be dev, ci or heavy, not {PROFILE_NAME!r}")
PROFILE = settings.get_profile(PROFILE_NAME)
# pytest-timeout per property test (the project default of 120 s is for unit
# tests; one state machine runs ~40 s under "ci").
TEST_TIMEOUT = {"dev": 300, "ci": 900, "heavy": 14400}[PROFILE_NAME]

_names = itertools.count()


def unique_segment_name(tag: str) -> str:
    """A posix segment name no other test (or test run) uses."""
    return f"zdprop-{tag}-{os.getpid()}-{next(_names)}"


def scaled(divisor: int, minimum: int) -> settings:
    """The profile with max_examples divided by ``divisor`` (at least
    ``minimum``): for the slow tests (processes)."""
    return settings(PROFILE, max_examples=max(minimum, PROFILE.max_examples // divisor))
