"""Hypothesis profiles of the property suite, and shared helpers.

Profiles (pick one with ZDSHM_HYPOTHESIS_PROFILE=ci|heavy|dev; "ci" is the
default).  max_examples is per state machine, i.e. per backend:

    dev     200 examples     quick local iteration
    ci      2 000 examples   the normal test command
    heavy   20 000 examples  before a release, or after touching csrc/core

The profiles are registered (in _zdprop.py, imported here) but not loaded
globally: the property tests apply them explicitly, so other test folders
keep their own hypothesis settings.  ZDSHM_HYPOTHESIS_NO_SHRINK=1 skips
shrinking (tests/mutation/run.py only needs to know that a test fails).
See README.md in this folder for replaying a failure.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import PROFILE, PROFILE_NAME  # noqa: E402  (registers the profiles)


def pytest_report_header(config):
    return (f"zdshm property profile: {PROFILE_NAME} "
            f"(max_examples={PROFILE.max_examples} per backend, "
            f"stateful_step_count={PROFILE.stateful_step_count})")
