"""Shared fixtures only; helpers that tests import live in `helpers.py`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetaudit.models import Credentials

from helpers import TEST_KEY_ID, TEST_SECRET


@pytest.fixture
def credentials() -> Credentials:
    """Credentials the emulator started by `emulator_url` accepts."""
    return Credentials(TEST_KEY_ID, TEST_SECRET)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's shell: no `FLEETAUDIT_*` variable, an 80-column terminal.

    Tests that need credentials in the environment set them (`helpers.set_env_credentials`);
    `COLUMNS`/`LINES` are pinned rather than removed because without them the progress line
    would take the width of whatever terminal runs pytest.
    """
    for name in [name for name in os.environ if name.startswith("FLEETAUDIT_")]:
        monkeypatch.delenv(name)
    # The shared quota schedule lives in the state directory: each test gets its own, so
    # no test books slots behind another's (or in the developer's ~/.local/state).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
