"""report.html in a real headless Chromium: the system's `chromium`, driven by Playwright.

`visit(page_path, name)` opens a file, records every console message, page error and
request, reads how many marks each chart has and how many it drew (`data-drawn`, set by the
page's own script from the rendered boxes), and saves a full-page screenshot as
`SCREENSHOTS/<name>.png` for a person to look at. `SKIP_REASON` says why browser tests cannot
run here (no chromium on PATH, or Playwright not installed), else None; .ci/run installs
chromium so that CI never skips them. Playwright never downloads a browser here: it is
pointed at the system's.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Under out/ (gitignored): kept after the run for review, replaced by the next one.
SCREENSHOTS = ROOT / "out" / "report-screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _skip_reason() -> str | None:
    if CHROMIUM is None:
        return "no `chromium` on PATH: install the Debian package chromium (.ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: `make install` installs the dev extra"
    return None


SKIP_REASON = _skip_reason()


@dataclass
class Visit:
    """What one page load showed."""

    url: str
    screenshot: Path
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL asked for, the page's too
    charts: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (marks, drawn)
    result: Any = None  # what `then(page)` returned

    @property
    def other_requests(self) -> list[str]:
        return [url for url in self.requests if url != self.url]


def visit(path: Path, name: str, then: Callable[[Any], Any] | None = None) -> Visit:
    """Load `path` in headless Chromium, screenshot it as `name`, run `then(page)`."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    seen = Visit(url=path.resolve().as_uri(), screenshot=SCREENSHOTS / f"{name}.png")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda m: seen.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: seen.errors.append(str(e)))
            page.on("request", lambda r: seen.requests.append(r.url))
            page.goto(seen.url, wait_until="load")
            charts = page.eval_on_selector_all(
                "svg.chart",
                "charts => charts.map(c => [c.dataset.chart, c.querySelectorAll('.mark').length,"
                " Number(c.dataset.drawn || -1)])",
            )
            seen.charts = {chart: (marks, drawn) for chart, marks, drawn in charts}
            if then is not None:
                seen.result = then(page)
            page.screenshot(path=str(seen.screenshot), full_page=True)
        finally:
            browser.close()
    return seen
