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
    legend: str = "top-left",
    integer_x: bool = False,
    width: int = 520,
    height: int = 300,
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
        f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{escape(title)}">',
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
    x_ticks = _ticks(x0, x1)
    if integer_x:  # epochs: whole numbers only, at most 6 of them
        step = max(1, int(-(-(x1 - x0) // 5)))
        x_ticks = [float(t) for t in range(int(x0), int(x1) + 1, step)]
    for tick in x_ticks:
        label = f"{tick:.0f}" if integer_x or x1 - x0 >= 4 else f"{tick:.2f}"
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
    legend_x = left + 8 if legend == "top-left" else left + plot_w - 170
    legend_y = top + 8 if legend == "top-left" else top + plot_h - 8 - 16 * len(series)
    for index, (name, xs, ys) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = [(sx(x), sy(y)) for x, y in zip(xs, ys, strict=False) if x is not None and y is not None]
        if len(points) > 1:
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(points) <= 30:  # few points (epochs): mark each, so a single epoch still shows
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points]
        y = legend_y + index * 16
        parts.append(f'<rect x="{legend_x}" y="{y}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{y + 9}" class="chart-legend">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
