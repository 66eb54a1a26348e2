"""Charts as inline SVG text, from plain values (pure): stacked bars, stacked columns, lines.

Plain SVG rather than a chart library: report.html must open offline and stay small
(BENCHMARKS.md measures it at 100k devices), and every chart here aggregates, so its size
does not grow with the fleet. Every mark (a bar segment, a point, a line) has the class
`mark` and a `<title>` (the browser's tooltip); every text is escaped here, so a version or
module name from the platform can never become markup. Colours are presentation attributes,
not `style`, so the page's Content-Security-Policy can forbid inline styles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

# A categorical palette readable on white (Tableau 10); "other" is grey.
PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
OTHER = "#d0d0d0"
WIDTH = 920
_LABEL_W = 300
_ROW_H = 24
_BAR_H = 16


@dataclass(frozen=True)
class Segment:
    """One part of a bar: its name (legend, tooltip), its count, and whether to mark it."""

    name: str
    count: int
    colour: str
    marked: bool = False  # drawn with a heavy outline (the policy's target)


@dataclass(frozen=True)
class Bar:
    label: str
    segments: Sequence[Segment]
    note: str = ""  # shown after the bar (e.g. "target 2.4.1: 61%")


def colour_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _short(text: str, limit: int = 44) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def stacked_bars(name: str, bars: Sequence[Bar], *, normalize: bool, unit: str = "devices") -> str:
    """Horizontal bars, one per label, split into segments; `normalize` draws each bar as
    shares of its own total, else all bars share one scale (the largest total)."""
    height = max(1, len(bars)) * _ROW_H + 10
    plot_w = WIDTH - _LABEL_W - 160
    largest = max((sum(s.count for s in b.segments) for b in bars), default=0) or 1
    parts = [_open(name, height)]
    for row, bar in enumerate(bars):
        y = 5 + row * _ROW_H
        total = sum(s.count for s in bar.segments)
        parts.append(
            f'<text x="{_LABEL_W - 8}" y="{y + _BAR_H - 4}" text-anchor="end" class="label">'
            f"<title>{_text(bar.label)}</title>{_text(_short(bar.label))}</text>"
        )
        scale = plot_w / (total if normalize else largest) if total else 0.0
        x = float(_LABEL_W)
        for segment in bar.segments:
            if segment.count <= 0:
                continue
            w = segment.count * scale
            share = f" ({100 * segment.count / total:.1f}%)" if total else ""
            outline = ' stroke="#111" stroke-width="2.5"' if segment.marked else ""
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" '
                f'height="{_BAR_H}" fill="{segment.colour}"{outline}>'
                f"<title>{_text(bar.label)}: {_text(segment.name)}, {segment.count} {unit}"
                f"{share}</title></rect>"
            )
            if w >= 9 * len(segment.name) + 8:  # the version fits inside its segment
                parts.append(
                    f'<text x="{x + 4:.1f}" y="{y + _BAR_H - 4}" class="inside">'
                    f"{_text(segment.name)}</text>"
                )
            x += w
        note = bar.note or f"{total} {unit if total != 1 else unit.rstrip('s')}"
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + _BAR_H - 4}" class="note">{_text(note)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_columns(
    name: str, columns: Sequence[tuple[str, Mapping[str, int]]], colours: Mapping[str, str]
) -> str:
    """Vertical columns (one per run, oldest left) stacked by category, one shared scale."""
    height, top, bottom, left = 280, 10, 90, 120
    plot_h = height - top - bottom
    plot_w = WIDTH - left - 40
    largest = max((sum(c.values()) for _, c in columns), default=0) or 1
    step = plot_w / max(1, len(columns))
    bar_w = max(2.0, min(48.0, step * 0.7))
    parts = [_open(name, height), _y_axis(left, top, plot_h, largest)]
    for i, (label, counts) in enumerate(columns):
        x = left + i * step + (step - bar_w) / 2
        y = float(top + plot_h)
        for category, count in counts.items():
            if count <= 0:
                continue
            h = count * plot_h / largest
            y -= h
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{max(h, 0.5):.1f}" fill="{colours.get(category, OTHER)}">'
                f"<title>{_text(label)}: {_text(category)} {count}</title></rect>"
            )
        parts.append(_x_label(x + bar_w / 2, top + plot_h + 12, label))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    name: str, x_labels: Sequence[str], lines: Sequence[tuple[str, Sequence[float | None]]]
) -> str:
    """Lines of shares (0..1) over runs, oldest left; a missing point breaks no line, it is
    skipped. Each point is a mark with its value as tooltip."""
    height, top, bottom, left = 260, 10, 90, 120
    plot_h = height - top - bottom
    plot_w = WIDTH - left - 60
    # Points sit inside the plot (a margin of half a step), so the end labels are not cut.
    step = plot_w / max(1, len(x_labels))
    parts = [_open(name, height), _y_axis(left, top, plot_h, 100, suffix="%")]
    x0 = left + step / 2
    for i, label in enumerate(x_labels):
        parts.append(_x_label(x0 + i * step, top + plot_h + 12, label))
    for n, (line_name, values) in enumerate(lines):
        colour = colour_for(n)
        points = [
            (x0 + i * step, top + plot_h * (1 - v)) for i, v in enumerate(values) if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline class="mark" points="{path}" fill="none" stroke="{colour}" '
                f'stroke-width="2"><title>{_text(line_name)}</title></polyline>'
            )
        for (x, y), value in zip(points, [v for v in values if v is not None], strict=True):
            parts.append(
                f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{_text(line_name)}: {100 * value:.1f}%</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(colours: Mapping[str, str]) -> str:
    """An HTML legend: a swatch (a tiny SVG, no inline style) and the escaped name."""
    items = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'fill="{colour}"/></svg> {_text(name)}</li>'
        for name, colour in colours.items()
    )
    return f'<ul class="legend">{items}</ul>'


def _open(name: str, height: int) -> str:
    return (
        f'<svg class="chart" data-chart="{_text(name)}" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">'
    )


def _y_axis(left: float, top: int, plot_h: int, largest: float, suffix: str = "") -> str:
    parts = []
    for tick in range(5):
        value = largest * tick / 4
        y = top + plot_h - plot_h * tick / 4
        shown = f"{value:.0f}" if largest >= 8 or suffix else f"{value:.1f}"
        parts.append(
            f'<line x1="{left:.1f}" x2="{WIDTH - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{shown}{suffix}</text>"
        )
    return "".join(parts)


def _x_label(x: float, y: float, label: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" class="tick" '
        f'transform="rotate(-35 {x:.1f} {y:.1f})">{_text(_short(label, 24))}</text>'
    )
