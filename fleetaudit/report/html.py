"""report.html from plain values: one self-contained page, no network, every string escaped
(pure: page.py gathers the values from a run directory).

The page carries its own Content-Security-Policy: nothing may load (`default-src 'none'`),
and only the page's own script and stylesheet may run, by hash. So even a string that
escaped escaping could neither run a script nor fetch anything; the browser tests check the
page loads without a console error or a request. The script only sorts tables and marks
each chart with how many of its marks were drawn (`data-drawn`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from fleetaudit.report import svg

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd}
.sub{color:#555}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:22px}.passed{color:#1a7f37}.failed{color:#c62828}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:3px 6px;
border-bottom:1px solid #eee;vertical-align:top}th{cursor:pointer;background:#f6f6f6}
td.n{text-align:right}.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:12px}
.chart text{font-size:12px;fill:#333}.chart .tick{fill:#666;font-size:11px}.note{fill:#555}
.chart .inside{fill:#fff;font-size:11px}
.empty{color:#777;font-style:italic}summary{cursor:pointer;margin:8px 0;font-weight:600}
""".strip()

_SCRIPT = """
document.querySelectorAll('svg.chart').forEach(function (chart) {
  var drawn = 0;
  chart.querySelectorAll('.mark').forEach(function (mark) {
    var box = mark.getBBox();
    if (box.width > 0 || box.height > 0) { drawn += 1; }
  });
  chart.setAttribute('data-drawn', String(drawn));
});
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var column = th.cellIndex;
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var down = th.getAttribute('data-order') !== 'desc';
    th.setAttribute('data-order', down ? 'desc' : 'asc');
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute('data-value') || a.cells[column].textContent;
      var y = b.cells[column].getAttribute('data-value') || b.cells[column].textContent;
      var nx = Number(x), ny = Number(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (x < y ? -1 : (x > y ? 1 : 0));
      return down ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
""".strip()


@dataclass(frozen=True)
class VersionGroup:
    """The versions one (product, module) runs: (version, devices), most common first."""

    product_key: str
    module: str
    versions: Sequence[tuple[str, int]]
    target: str | None = None


@dataclass(frozen=True)
class ReportValues:
    """Everything report.html shows, as plain values."""

    run_id: str
    started_at: str
    finished_at: str
    status: str
    trusted: bool
    devices: Mapping[str, int]
    findings_by_severity: Mapping[str, int]
    gate_verdict: str
    gate_reasons: Sequence[str]
    changes: Mapping[str, object] | None
    versions: Sequence[VersionGroup]
    task_ages: Mapping[str, Sequence[int]]  # task status -> tasks per AGE_BUCKETS
    age_buckets: Sequence[str]
    findings_history: Sequence[tuple[str, Mapping[str, int]]]  # run id -> findings by type
    target_history: Sequence[tuple[str, Sequence[float | None]]]  # target -> share per run
    history_runs: Sequence[str]
    new: Sequence[Mapping[str, object]]
    resolved: Sequence[Mapping[str, object]]
    moves: Sequence[tuple[str, str, str, str, int]]  # product, module, from, to, devices
    worst: Sequence[Mapping[str, object]]
    more: Mapping[str, int] = field(default_factory=dict)  # rows left out per section


def _t(value: object) -> str:
    return "" if value is None else escape(str(value), quote=True)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_report(values: ReportValues) -> str:
    """The whole page as text."""
    policy = (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}"
    )
    # Pictures first, long tables last: the reader deciding on a rollout scrolls less.
    body = [
        _headline(values),
        _versions_section(values),
        _ages_section(values),
        _history_section(values),
        _changes_section(values),
        _worst_section(values),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>fleetaudit run {_t(values.run_id)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n"
    )


def _headline(v: ReportValues) -> str:
    total = sum(v.devices.values())
    findings = sum(v.findings_by_severity.values())
    verdict = {"passed": "passed", "failed": "FAILED"}.get(v.gate_verdict, "no rules")
    cards: list[tuple[str, object]] = [
        ("devices", total),
        *((status, n) for status, n in v.devices.items()),
        ("findings", findings),
        *((severity, n) for severity, n in v.findings_by_severity.items()),
    ]
    if v.changes is not None:
        cards += [("new", v.changes.get("new", 0)), ("resolved", v.changes.get("resolved", 0))]
    trust = "" if v.trusted else ' &middot; <b class="failed">coverage below the minimum</b>'
    reasons = "".join(f"<li>{_t(r)}</li>" for r in v.gate_reasons)
    return (
        f"<h1>fleetaudit run {_t(v.run_id)}</h1>"
        f'<div class="sub">{_t(v.started_at)} &rarr; {_t(v.finished_at)} &middot; '
        f"{_t(v.status)}{trust}</div>"
        f'<div class="cards">{"".join(_card(k, n) for k, n in cards)}'
        f'<div class="card">gate<b class="{_t(v.gate_verdict)}">{verdict}</b></div></div>'
        + (f'<ul id="gate-reasons">{reasons}</ul>' if reasons else "")
    )


def _card(label: str, value: object) -> str:
    return f'<div class="card">{_t(label)}<b>{_t(value)}</b></div>'


def _changes_section(v: ReportValues) -> str:
    if v.changes is None:
        return ""
    previous = v.changes.get("previous_run_id")
    since = f"since run {_t(previous)}" if previous else "first run of its series: all new"
    counts = ", ".join(
        f"{_t(v.changes.get(k, 0))} {label}"
        for k, label in (
            ("new", "new"),
            ("resolved", "resolved"),
            ("persisting", "persisting"),
            ("version_changed", "module versions moved"),
            ("device_joined", "devices joined"),
            ("device_left", "devices left"),
        )
    )
    columns = ("finding_type", "severity", "device", "module_name", "first_seen", "detail")
    parts = [f"<h2>What changed</h2><p>{since}: {counts}.</p>"]
    for title, rows, key in (("New", v.new, "new"), ("Resolved", v.resolved, "resolved")):
        more = v.more.get(key, 0)
        parts.append(f"<details><summary>{title}: {len(rows) + more} findings</summary>")
        parts.append(_table(f"{key}-findings", columns, rows, more) + "</details>")
    if v.moves:
        rows = [
            {"product_key": p, "module": m, "from": a, "to": b, "devices": n}
            for p, m, a, b, n in v.moves
        ]
        parts.append("<details open><summary>Module versions moved</summary>")
        parts.append(
            _table(
                "moves",
                ("product_key", "module", "from", "to", "devices"),
                rows,
                v.more.get("moves", 0),
            )
            + "</details>"
        )
    return "".join(parts)


def _versions_section(v: ReportValues) -> str:
    head = "<h2>Versions per (product, module)</h2>"
    if not v.versions:
        return head + '<p class="empty">No module versions reported.</p>'
    bars = []
    for group in v.versions:
        total = sum(n for _, n in group.versions)
        segments = [
            svg.Segment(version, n, svg.colour_for(i), marked=version == group.target)
            for i, (version, n) in enumerate(group.versions)
        ]
        note = f"{total} devices"
        if group.target is not None:
            on = sum(n for version, n in group.versions if version == group.target)
            note = f"target {group.target}: {100 * on / total:.0f}% of {total}" if total else note
        bars.append(svg.Bar(f"{group.product_key}/{group.module}", segments, note))
    explain = (
        "<p>Each bar is one (product, module), split by version, most common first; the "
        "segment outlined in black is the policy's target.</p>"
    )
    more = v.more.get("versions", 0)
    tail = f'<p class="empty">and {more} more (product, module) pairs.</p>' if more else ""
    return head + explain + svg.stacked_bars("versions", bars, normalize=True) + tail


def _ages_section(v: ReportValues) -> str:
    head = "<h2>Stalled tasks by status and age</h2>"
    if not any(sum(counts) for counts in v.task_ages.values()):
        return head + '<p class="empty">No stalled tasks.</p>'
    colours = {bucket: svg.colour_for(i) for i, bucket in enumerate(v.age_buckets)}
    bars = [
        svg.Bar(
            status,
            [svg.Segment(b, n, colours[b]) for b, n in zip(v.age_buckets, counts, strict=True)],
        )
        for status, counts in v.task_ages.items()
    ]
    return (
        head
        + svg.legend(colours)
        + svg.stacked_bars("task-ages", bars, normalize=False, unit="tasks")
    )


def _history_section(v: ReportValues) -> str:
    head = "<h2>Over the last runs</h2>"
    types = sorted({t for _, counts in v.findings_history for t in counts})
    colours = {t: svg.colour_for(i) for i, t in enumerate(types)}
    parts = [head, "<h3>Findings by type</h3>"]
    if types:
        parts += [
            svg.legend(colours),
            svg.stacked_columns("findings-history", v.findings_history, colours),
        ]
    else:
        parts.append('<p class="empty">No findings in these runs.</p>')
    if v.target_history:
        lines = {name: svg.colour_for(i) for i, (name, _) in enumerate(v.target_history)}
        parts += [
            "<h3>On-target share per target</h3>",
            svg.legend(lines),
            svg.line_chart("target-share", v.history_runs, v.target_history),
        ]
    return "".join(parts)


def _worst_section(v: ReportValues) -> str:
    columns = ("device", "findings", "critical", "warning", "info", "types")
    head = (
        "<h2>Worst devices</h2><p>Critical first, then most findings; click a heading to sort.</p>"
    )
    return head + _table("worst", columns, v.worst, v.more.get("worst", 0))


def _table(
    name: str, columns: Sequence[str], rows: Sequence[Mapping[str, object]], more: int
) -> str:
    if not rows:
        return f'<p class="empty" id="{name}-none">None.</p>'
    head = "".join(f"<th>{_t(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, int):
                cells.append(f'<td class="n" data-value="{value}">{value}</td>')
            else:
                cells.append(f"<td>{_t(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    tail = f'<p class="empty">and {more} more.</p>' if more else ""
    return (
        f'<table class="sortable" id="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{tail}"
    )
