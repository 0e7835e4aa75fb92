"""Fixtures shared by the inference tests."""

import pytest

from inference.registry.load_check import LOAD_CHECK_SETTING


@pytest.fixture
def no_load_check(settings):
    """For tests about something other than whether a model loads: registration skips the child-process
    load check, through the seam the registry offers for this (see inference/registry/load_check.py)."""
    setattr(settings, LOAD_CHECK_SETTING, "inference.registry.load_check.assume_model_loads")
