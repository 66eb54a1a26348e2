"""report.html from values (report/html.py, report/svg.py): escaping, the page's
Content-Security-Policy, one mark per drawn value, and empty sections (pure)."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from html.parser import HTMLParser

from fleetaudit.report.html import ReportValues, VersionGroup, render_report

HOSTILE = '<script>alert("x")</script>&"\'<img src=x onerror=alert(1)>'


def _values(**changes: object) -> ReportValues:
    values = ReportValues(
        run_id="20260101T020000Z-abcdef",
        started_at="2026-01-01T02:00:00.000Z",
        finished_at="2026-01-01T02:10:00.000Z",
        status="complete",
        trusted=True,
        devices={"ok": 3, "not_found": 0, "error": 0},
        findings_by_severity={"critical": 1, "warning": 1, "info": 0},
        gate_verdict="failed",
        gate_reasons=[f"1 new critical findings on {HOSTILE}"],
        changes={"previous_run_id": "R0", "new": 1, "resolved": 0},
        versions=[VersionGroup("pk", HOSTILE, [("1.0", 2), (HOSTILE, 1)], target=HOSTILE)],
        task_ages={"QUEUED": [1, 0, 2, 0, 0, 0]},
        age_buckets=["a", "b", "c", "d", "e", "f"],
        findings_history=[("R0", {"stalled_task": 2}), ("R1", {"stalled_task": 1, HOSTILE: 1})],
        target_history=[(HOSTILE, [0.5, 0.75])],
        history_runs=["R0", "R1"],
        new=[{"finding_type": "stalled_task", "severity": "critical", "device": f"pk/{HOSTILE}"}],
        resolved=[],
        moves=[("pk", "m", "1.0", HOSTILE, 2)],
        worst=[{"device": f"pk/{HOSTILE}", "findings": 2, "critical": 1, "types": HOSTILE}],
    )
    return replace(values, **changes)  # type: ignore[arg-type]


class _Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script: list[str] = []
        self.style: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.script.append(data)
        elif self._in == "style":
            self.style.append(data)


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_hostile_strings_stay_text() -> None:
    """A name made of markup adds no element and no event handler: it is escaped everywhere."""
    parsed = _parse(render_report(_values()))
    tags = [tag for tag, _ in parsed.tags]
    assert tags.count("script") == 1
    assert "img" not in tags
    assert not [attrs for _, attrs in parsed.tags if any(k.startswith("on") for k in attrs)]


def test_page_loads_nothing_and_runs_only_its_own_code() -> None:
    """The CSP forbids every load and allows exactly the page's script and style, by hash."""
    page = render_report(_values())
    parsed = _parse(page)
    [policy] = [
        a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy is not None
    assert "default-src 'none'" in policy
    for text in ("".join(parsed.script), "".join(parsed.style)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert not [a for _, a in parsed.tags if "src" in a or "href" in a]


def test_every_value_is_one_mark() -> None:
    """Each chart draws a mark per value: bar segments, columns, points and their line."""
    page = render_report(_values())
    charts = dict(re.findall(r'data-chart="([^"]+)"(.*?)</svg>', page, flags=re.DOTALL))
    marks = {name: body.count('class="mark"') for name, body in charts.items()}
    assert marks == {"versions": 2, "task-ages": 2, "findings-history": 3, "target-share": 3}


def test_the_target_is_outlined() -> None:
    """The target's segment of a version bar is drawn with the heavy outline."""
    page = render_report(_values())
    outlined = re.findall(r'<rect class="mark"[^>]*stroke-width="2.5"><title>([^<]*)', page)
    assert len(outlined) == 1
    assert "&lt;script&gt;" in outlined[0]


def test_empty_run_says_so() -> None:
    """A run with nothing to draw says so in words instead of drawing empty charts."""
    page = render_report(
        _values(
            versions=[],
            task_ages={},
            findings_history=[("R1", {})],
            target_history=[],
            new=[],
            moves=[],
            worst=[],
            changes=None,
        )
    )
    assert "<svg" not in page.replace('<svg width="12"', "")
    assert "No module versions reported." in page
    assert "No stalled tasks." in page
    assert 'id="worst-none"' in page
