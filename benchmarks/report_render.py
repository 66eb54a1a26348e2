"""report.html: its size, the time to write it, and the time Chromium takes to render it;
with `--plotly`, the same charts drawn by Plotly (plotly.js inlined) for comparison.

Render time is read inside the page: `performance.now()` (milliseconds since navigation
started) two animation frames after the load event, so parsing, scripts, layout and the
first paint are in it. Each figure is the median of `--runs` fresh pages in one headless
Chromium (the system's, driven by Playwright). Prints one JSON object.

    .venv/bin/python benchmarks/report_render.py out/demo/LATEST
    .venv/bin/python benchmarks/report_render.py RUN_DIR --plotly   # needs `pip install plotly`
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetaudit.report.html import ReportValues
from fleetaudit.report.page import report_values
from fleetaudit.report.runs import open_run, out_of, series_runs
from fleetaudit.report.series import REPORT_FILE, write_report
from fleetaudit.report.summary import find_run_dir

_AFTER_PAINT = (
    "() => new Promise(done => requestAnimationFrame(() => "
    "requestAnimationFrame(() => done(performance.now()))))"
)


def render_ms(page_path: Path, runs: int) -> float:
    """Median milliseconds from navigation to the first paint after load, fresh page each."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH")
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1000, "height": 800})
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                times.append(float(page.evaluate(_AFTER_PAINT)))
                page.close()
        finally:
            browser.close()
    return statistics.median(times)


def plotly_page(values: ReportValues, path: Path) -> None:
    """The report's four charts drawn by Plotly, plotly.js inlined (an offline page)."""
    import plotly.graph_objects as go  # not a dependency: installed by hand to compare

    figures = []
    versions = go.Figure()
    for group in values.versions:
        label = f"{group.product_key}/{group.module}"
        for version, n in group.versions:
            versions.add_bar(y=[label], x=[n], name=version, orientation="h", showlegend=False)
    versions.update_layout(
        barmode="stack", barnorm="percent", height=40 + 24 * len(values.versions)
    )
    figures.append(versions)
    ages = go.Figure()
    for i, bucket in enumerate(values.age_buckets):
        ages.add_bar(
            y=list(values.task_ages),
            x=[counts[i] for counts in values.task_ages.values()],
            name=bucket,
            orientation="h",
        )
    ages.update_layout(barmode="stack")
    figures.append(ages)
    history = go.Figure()
    types = sorted({t for _, counts in values.findings_history for t in counts})
    for finding_type in types:
        history.add_bar(
            x=[run for run, _ in values.findings_history],
            y=[counts.get(finding_type, 0) for _, counts in values.findings_history],
            name=finding_type,
        )
    history.update_layout(barmode="stack")
    figures.append(history)
    shares = go.Figure()
    for name, points in values.target_history:
        shares.add_scatter(x=list(values.history_runs), y=list(points), name=name)
    figures.append(shares)
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=(i == 0))
        for i, figure in enumerate(figures)
    ]
    path.write_text(f"<!DOCTYPE html><html><body>{''.join(parts)}</body></html>", encoding="utf-8")


def measure(run_dir: Path, runs: int, plotly: bool) -> dict[str, Any]:
    run_dir = find_run_dir(run_dir)
    started = time.perf_counter()
    page = write_report(run_dir, out_of(run_dir))
    written_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "devices": open_run(run_dir).manifest.get("counts", {}).get("devices_total"),
        "bytes": page.stat().st_size,
        "write_s": round(written_s, 3),
        "render_ms": round(render_ms(page, runs), 1),
    }
    if plotly:
        run = open_run(run_dir)
        earlier = [r for r in series_runs(out_of(run_dir), run.series) if r.run_id < run.run_id]
        with tempfile.TemporaryDirectory() as tmp:
            other = Path(tmp) / REPORT_FILE
            plotly_page(report_values(run, earlier), other)
            result["plotly_bytes"] = other.stat().st_size
            result["plotly_render_ms"] = round(render_ms(other, runs), 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory, OUT or OUT/LATEST")
    parser.add_argument("--runs", type=int, default=5, help="page loads per figure (median)")
    parser.add_argument("--plotly", action="store_true", help="also the same charts by Plotly")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.run_dir, args.runs, args.plotly)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
