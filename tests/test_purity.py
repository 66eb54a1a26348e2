"""The pure core stays pure: signing, parsing, rules and schemas import no I/O framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

# No I/O framework and no pyarrow either: the protocol, the rules, the join and their words.
LIGHT_MODULES = (
    "fleetaudit.api.signing",
    "fleetaudit.api.protocol",
    "fleetaudit.api.retry",
    "fleetaudit.audit",
    "fleetaudit.audit.versions",
    "fleetaudit.audit.findings",
    "fleetaudit.audit.join",
    "fleetaudit.audit.majority",
    "fleetaudit.audit.crosscheck",
    "fleetaudit.audit.sampling",
    "fleetaudit.audit.rolling",
    "fleetaudit.audit.freshness",
    "fleetaudit.api.job_listings",
    "fleetaudit.policy",
    "fleetaudit.config",
    "fleetaudit.settings",
    "fleetaudit.setting_kinds",
    "fleetaudit.tomlfile",
    "fleetaudit.durations",
    "fleetaudit.terms",
    "fleetaudit.models",
    "fleetaudit.errors",
    "fleetaudit.remediation.plan",
    "fleetaudit.remediation.render",
    "fleetaudit.report.svg",
    "fleetaudit.report.html",
)
# No I/O framework, but pyarrow is theirs to use: they read or describe Parquet tables.
ARROW_MODULES = (
    "fleetaudit.devices",
    "fleetaudit.report.schema",
    "fleetaudit.report.manifest",
    "fleetaudit.gate",
    "fleetaudit.metrics",
    "fleetaudit.report.changes",
    "fleetaudit.report.trends",
    "fleetaudit.report.keys",
    "fleetaudit.report.changes_text",
)
IO_FRAMEWORKS = ("aiohttp", "anyio", "asyncio")


def _loaded(module: str, watched: tuple[str, ...]) -> str:
    """Which of `watched` a fresh interpreter holds in sys.modules after importing `module`."""
    probe = (
        f"import sys, {module}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({watched!r})))"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_module_imports_neither_io_framework_nor_pyarrow(module: str) -> None:
    """Importing a light module loads none of pyarrow, aiohttp, anyio or asyncio."""
    loaded = _loaded(module, ("pyarrow", *IO_FRAMEWORKS))
    assert loaded == "[]", f"{module} pulls in {loaded}"


@pytest.mark.parametrize("module", ARROW_MODULES)
def test_pure_module_imports_no_io_framework(module: str) -> None:
    """Importing a pure module loads neither aiohttp, anyio nor asyncio."""
    loaded = _loaded(module, IO_FRAMEWORKS)
    assert loaded == "[]", f"{module} pulls in {loaded}"
