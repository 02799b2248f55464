"""Small server-side SVG charts (no JavaScript, no plotting dependency): line charts for training
curves and ROC curves. Each function returns an SVG string for a template's `|safe` filter."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["line_chart"]

PALETTE = ("#2f5fd0", "#2e9e5b", "#d63b3b", "#b7791f", "#7c3aed", "#0891b2")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = (hi - lo) / (count - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(count)]


def line_chart(
    series: Sequence[tuple[str, Sequence[float | None], Sequence[float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    width: int = 420,
    height: int = 280,
) -> str:
    """series: (name, xs, ys); None values are skipped. Axes fit the data unless ranges are given."""
    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=False) if x is not None and y is not None]
    if not points:
        return f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}"><text x="20" y="40">No data</text></svg>'
    x0, x1 = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    y0, y1 = y_range or (min(p[1] for p in points), max(p[1] for p in points))
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    left, right, top, bottom = 52, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-frame"/>',
    ]
    for tick in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" class="chart-grid"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{sy(tick) + 4:.1f}" class="chart-tick" text-anchor="end">{tick:.2f}</text>'
        )
    for tick in _ticks(x0, x1):
        label = f"{tick:.0f}" if x1 - x0 >= 4 else f"{tick:.2f}"
        parts.append(
            f'<text x="{sx(tick):.1f}" y="{top + plot_h + 14}" class="chart-tick" text-anchor="middle">{label}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" class="chart-axis" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2}" class="chart-axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    if diagonal:
        parts.append(f'<line x1="{sx(x0)}" y1="{sy(y0)}" x2="{sx(x1)}" y2="{sy(y1)}" class="chart-diagonal"/>')
    for index, (name, xs, ys) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(
            f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=False) if x is not None and y is not None
        )
        if coords:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<rect x="{left + 8}" y="{top + 8 + index * 16}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{left + 22}" y="{top + 17 + index * 16}" class="chart-legend">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
