"""report.html in a real headless Chromium: it loads with no console message and no request,
every chart draws its marks, a device named like markup shows as text, tables sort.

Screenshots are kept in out/report-screenshots/ (one per test) for review. Without chromium
these tests skip with the reason; .ci/run installs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetaudit.report.series import REPORT_FILE

from browser import SKIP_REASON, visit
from nights import HOSTILE, Nights, two_nights

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    return two_nights(tmp_path_factory.mktemp("browser-nights"))


def test_report_loads_offline_and_draws_every_chart(nights: Nights) -> None:
    """No console message, no uncaught error, no request but the file, every mark drawn."""
    seen = visit(nights.second.run_dir / REPORT_FILE, "second-night")
    assert (seen.console, seen.errors, seen.other_requests) == ([], [], [])
    assert set(seen.charts) == {"versions", "task-ages", "findings-history", "target-share"}
    for chart, (marks, drawn) in seen.charts.items():
        assert drawn == marks > 0, chart
    assert seen.screenshot.stat().st_size > 0


def test_first_run_report_draws_without_history(nights: Nights) -> None:
    """The first run of a series (one point of history, no stalled task) still loads clean."""
    seen = visit(nights.first.run_dir / REPORT_FILE, "first-night")
    assert (seen.console, seen.errors, seen.other_requests) == ([], [], [])
    assert all(marks == drawn > 0 for marks, drawn in seen.charts.values())


def test_hostile_device_name_shows_as_text(nights: Nights) -> None:
    """A device named `<script>...` is shown as those characters and runs nothing."""

    def read(page: Any) -> tuple[object, ...]:
        return (
            page.evaluate("typeof window.pwned"),
            page.evaluate("document.scripts.length"),
            page.inner_text("#worst"),
        )

    seen = visit(nights.second.run_dir / REPORT_FILE, "hostile-name", then=read)
    pwned, scripts, worst = seen.result
    assert (pwned, scripts) == ("undefined", 1)
    assert f"pk1/{HOSTILE}" in worst


def test_worst_devices_sort_by_a_clicked_column(nights: Nights) -> None:
    """Clicking a heading sorts the worst-devices table by it, again reverses it."""

    def sort(page: Any) -> list[list[str]]:
        orders = []
        for _ in range(2):
            page.click("#worst th:nth-child(1)")
            orders.append(
                page.eval_on_selector_all(
                    "#worst tbody tr td:first-child", "c => c.map(x => x.textContent)"
                )
            )
        return orders

    descending, ascending = visit(nights.second.run_dir / REPORT_FILE, "sorted", then=sort).result
    assert descending == sorted(descending, reverse=True)
    assert ascending == sorted(ascending)
    assert len(ascending) > 1


def test_the_checks_catch_a_request_and_a_console_error(tmp_path: Path) -> None:
    """The harness sees what it must catch: a page that fetches and logs an error fails it."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>',
        encoding="utf-8",
    )
    seen = visit(page, "negative-control")
    assert "http://127.0.0.1:9/x.png" in seen.other_requests
    assert ("error", "boom") in seen.console
