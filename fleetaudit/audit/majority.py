"""Fleet-majority drift: a module version that differs from what most of its fleet runs (pure).

It needs the whole run, so it runs at the end, in two streamed passes over the committed
module rows: `VersionCounts` gathers compact per-(product, module, version) counters, then
`majority_drift_findings` judges each row against them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator

from fleetaudit.audit.findings import finding_about, module_of
from fleetaudit.audit.versions import version_key
from fleetaudit.models import Device, Finding, ModuleVersion
from fleetaudit.terms import FindingType, Severity


class VersionCounts:
    """How many devices report each version, per (product_key, module).

    Only distinct strings are stored, once each, so a fleet of a million devices running a
    few versions costs a few kilobytes.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counter[str]] = {}

    def add(self, product_key: str, module: str, version: str, devices: int = 1) -> None:
        """Count `devices` devices (one by default) reporting `version` for (product, module)."""
        key = (product_key, module_of(module))
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = Counter()
        counter[version] += devices

    def count(self, product_key: str, module: str, version: str) -> int:
        """How many devices were counted with that version."""
        counter = self._counts.get((product_key, module_of(module)))
        return counter[version] if counter else 0

    def total(self, product_key: str, module: str) -> int:
        """How many devices were counted for (product_key, module)."""
        counter = self._counts.get((product_key, module_of(module)))
        return counter.total() if counter else 0

    def majority(self, product_key: str, module: str) -> str | None:
        """The most common version (ties: the highest in natural order); None if unseen."""
        counter = self._counts.get((product_key, module_of(module)))
        if not counter:
            return None
        return max(counter.items(), key=lambda item: (item[1], version_key(item[0])))[0]


def majority_drift_findings(
    rows: Iterable[ModuleVersion],
    counts: VersionCounts,
    targeted: Collection[tuple[str, str]],
) -> Iterator[Finding]:
    """`version_drift` (info) for module rows that differ from their fleet majority.

    Rows of a targeted (product_key, module) are skipped: the policy rule covers those.
    """
    majorities: dict[tuple[str, str], str | None] = {}
    for row in rows:
        key = (row.product_key, module_of(row.module_name))
        if key in targeted:
            continue
        if key not in majorities:
            majorities[key] = counts.majority(*key)
        majority = majorities[key]
        if majority is None or row.module_version == majority:
            continue
        share = f"{counts.count(*key, majority)} of {counts.total(*key)} devices"
        yield finding_about(
            FindingType.VERSION_DRIFT,
            Severity.INFO,
            f"Module {key[1]} runs {row.module_version}, but the fleet majority for "
            f"product {row.product_key} is {majority} ({share}).",
            Device(row.product_key, row.device_name, row.iot_id),
            module_name=key[1],
            observed_version=row.module_version,
            expected_version=majority,
        )
