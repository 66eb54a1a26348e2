"""The emulator's own copy of the platform's facts agrees with the client's."""

from __future__ import annotations

from fleetaudit.api import protocol
from fleetaudit.emulator import actions, facts
from fleetaudit.emulator.app import DEFAULT_CANCELLABLE
from fleetaudit.terms import TERMINAL_STATUSES, UNFINISHED_STATUSES


def test_emulator_facts_agree_with_the_protocol() -> None:
    """Actions, quotas, page sizes, the cancel limit and task statuses agree on both sides."""
    assert set(actions.HANDLERS) == set(protocol.ACTIONS)
    assert dict(facts.DEFAULT_QUOTAS) == dict(protocol.DEFAULT_QUOTAS)
    assert (facts.MODULE_PAGE_SIZE, facts.JOB_PAGE_SIZE, facts.MAX_CANCEL_DEVICES) == (
        protocol.MODULE_PAGE_SIZE,
        protocol.JOB_PAGE_SIZE,
        protocol.MAX_CANCEL_DEVICES,
    )
    assert facts.UNFINISHED_STATUSES == UNFINISHED_STATUSES
    assert facts.TERMINAL_STATUSES == TERMINAL_STATUSES
    assert set(protocol.CANCELLABLE_STATUSES) == DEFAULT_CANCELLABLE
