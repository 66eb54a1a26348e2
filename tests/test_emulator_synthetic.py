"""The synthetic fleet: deterministic, reversible ids, and the variety audits need."""

from __future__ import annotations

import itertools
from collections import Counter

from fleetaudit.emulator.synthetic import SyntheticFleet
from fleetaudit.terms import TERMINAL_STATUSES, UNFINISHED_STATUSES

NOW_MS = 1_732_009_663_000


def test_same_seed_same_fleet() -> None:
    """Two fleets with one seed agree on devices and tasks; another seed differs."""
    a, b, c = (SyntheticFleet(300, seed=s, now_ms=NOW_MS) for s in (1, 1, 2))
    assert list(a.iter_device_list()) == list(b.iter_device_list())
    assert list(a.iter_device_list()) != list(c.iter_device_list())
    for pk, dn, _ in itertools.islice(a.iter_device_list(), 100):
        da, db = a.device(pk, dn), b.device(pk, dn)
        assert da == db
        if da is not None and db is not None:
            assert a.tasks(da) == b.tasks(db)


def test_iot_id_round_trips() -> None:
    """Every listed IotId resolves to the device with the listed name, or to nothing if absent."""
    fleet = SyntheticFleet(2000, seed=3, now_ms=NOW_MS)
    for pk, dn, iot_id in fleet.iter_device_list():
        device = fleet.device_by_iot_id(iot_id)
        assert device == fleet.device(pk, dn)
    assert fleet.device_by_iot_id("not-an-id") is None


def test_about_one_percent_do_not_exist() -> None:
    """Roughly 1% of listed devices are unknown to the platform."""
    fleet = SyntheticFleet(5000, seed=4, now_ms=NOW_MS)
    missing = sum(fleet.device(pk, dn) is None for pk, dn, _ in fleet.iter_device_list())
    assert 20 <= missing <= 90


def test_million_device_fleet_is_lazy() -> None:
    """A million-device fleet answers for its last device without building the others."""
    fleet = SyntheticFleet(1_000_000, seed=5, now_ms=NOW_MS)
    index = next(i for i in range(999_999, 0, -1) if fleet.exists(i))
    device = fleet.device_by_iot_id(fleet.iot_id(index))
    assert device is not None
    assert device.device_name == "dev-" + str(index).zfill(7)


def test_fleet_has_the_variety_audits_need() -> None:
    """Statuses, big devices, module mixes, firmware and jobs of every kind all occur."""
    fleet = SyntheticFleet(3000, seed=6, now_ms=NOW_MS)
    statuses: Counter[str] = Counter()
    versions: dict[tuple[str, str], Counter[str]] = {}
    big = 0
    firmware_ids = set()
    for pk, dn, _ in fleet.iter_device_list():
        device = fleet.device(pk, dn)
        if device is None:
            continue
        big += len(device.modules) > 200
        for module, version in device.modules.items():
            versions.setdefault((pk, module), Counter())[version] += 1
        for task in fleet.tasks(device):
            statuses[task.status] += 1
            firmware_ids.add(task.firmware_id)
    assert set(statuses) == set(UNFINISHED_STATUSES) | set(TERMINAL_STATUSES)
    assert big >= 1
    default = versions[(fleet.product_keys[0], "default")]
    assert len(default) >= 4
    firmware = [fleet.firmware(f) for f in firmware_ids]
    assert all(f is not None for f in firmware)
    all_fw = [
        fleet.firmware(str(100_000 + p * 1000 + m * 100 + d * 10 + t))
        for p in range(5)
        for m in range(4)
        for d in range(1, 5)
        for t in (0, 1)
    ]
    known = [f for f in all_fw if f is not None]
    assert {f.status for f in known} == {-1, 0, 1, 2, 3}
    assert {f.type for f in known} == {0, 1}
    jobs = [j for f in known for j in fleet._jobs(f.firmware_id)]
    assert {j.status for j in jobs} == {"PLANNED", "IN_PROGRESS", "COMPLETED", "CANCELED"}
    assert {j.job_type for j in jobs} == {"VERIFY_FIRMWARE", "UPGRADE_FIRMWARE"}


def test_cancel_overlays_the_derived_state() -> None:
    """Cancelling a synthetic device's task changes it there and nowhere else."""
    fleet = SyntheticFleet(2000, seed=7, now_ms=NOW_MS)
    for pk, dn, _ in fleet.iter_device_list():
        device = fleet.device(pk, dn)
        queued = [t for t in fleet.tasks(device) if t.status == "QUEUED"] if device else []
        if queued:
            break
    assert device is not None
    task = queued[0]
    changed = fleet.cancel(
        pk, task.firmware_id, [dn], job_id=None, cancellable={"QUEUED"}, now_ms=NOW_MS + 5
    )
    after = {t.task_id: t for t in fleet.tasks(device)}[task.task_id]
    assert changed >= 1
    assert (after.status, after.utc_modified_ms) == ("CANCELED", NOW_MS + 5)
