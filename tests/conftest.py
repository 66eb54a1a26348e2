"""Shared fixtures only; helpers that tests import live in `helpers.py`."""

from __future__ import annotations

import pytest
from helpers import TEST_KEY_ID, TEST_SECRET

from fleetaudit.models import Credentials


@pytest.fixture
def credentials() -> Credentials:
    """Credentials the emulator started by `emulator_url` accepts."""
    return Credentials(TEST_KEY_ID, TEST_SECRET)
