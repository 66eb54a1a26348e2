"""The pure core stays pure: signing, parsing, rules and schemas import no I/O framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_MODULES = (
    "fleetaudit.api.signing",
    "fleetaudit.api.protocol",
    "fleetaudit.api.retry",
    "fleetaudit.audit.versions",
    "fleetaudit.audit.findings",
    "fleetaudit.config",
    "fleetaudit.policy",
    "fleetaudit.durations",
    "fleetaudit.terms",
    "fleetaudit.devices",
    "fleetaudit.models",
    "fleetaudit.errors",
    "fleetaudit.report.schema",
    "fleetaudit.report.manifest",
    "fleetaudit.remediation.plan",
    "fleetaudit.remediation.render",
    "fleetaudit.gate",
    "fleetaudit.metrics",
)
IO_FRAMEWORKS = ("aiohttp", "anyio", "asyncio")


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io_framework(module: str) -> None:
    """Importing a pure module loads neither aiohttp, anyio nor asyncio."""
    probe = (
        f"import sys, {module}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({IO_FRAMEWORKS!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "[]", f"{module} pulls in {loaded}"
