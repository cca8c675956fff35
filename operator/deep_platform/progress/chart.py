"""The dashboard's charts of a training's history: one SVG per metric, drawn here (no JS).

Each chart plots the metric against the epoch (or step) of each report: a polyline with one
point per report, the axes labelled with their first and last values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 40


@dataclass
class Chart:
    metric: str
    x_label: str
    points: list[tuple[float, float]]

    @property
    def svg(self) -> str:
        return render_svg(self)


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10000:
        return f"{value:.4g}"
    return f"{value:.2e}"


def charts(history: dict[str, Any] | None, x_label: str = "epoch") -> list[Chart]:
    """One chart per metric in the history ({"points": [{"x", "m": {metric: value}}]})."""
    points = [p for p in (history or {}).get("points") or [] if isinstance(p, dict)]
    names: list[str] = []
    for point in points:
        for name in point.get("m") or {}:
            if name not in names:
                names.append(name)
    found = []
    for name in names:
        series = [
            (float(p["x"]), float(p["m"][name]))
            for p in points
            if name in (p.get("m") or {}) and math.isfinite(float(p["m"][name]))
        ]
        if series:
            found.append(Chart(metric=name, x_label=x_label, points=series))
    return found


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_svg(chart: Chart) -> str:
    xs, ys = [x for x, _ in chart.points], [y for _, y in chart.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in chart.points)
    name = _escape(chart.metric)
    dots = "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5"/>' for x, y in chart.points[-60:])
    return (
        f'<svg class="metric-chart" data-metric="{name}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{name} against {chart.x_label}">'
        f"<title>{name} against {chart.x_label}</title>"
        f'<text class="chart-title" x="{LEFT}" y="18" font-size="14" font-weight="bold">{name}</text>'
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}" stroke="#555"/>'
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>'
        f'<text class="y-max" x="{LEFT - 6}" y="{TOP + 4}" font-size="12" text-anchor="end">{_fmt(y1)}</text>'
        f'<text class="y-min" x="{LEFT - 6}" y="{TOP + plot_h}" font-size="12" '
        f'text-anchor="end">{_fmt(y0)}</text>'
        f'<text class="x-min" x="{LEFT}" y="{TOP + plot_h + 16}" font-size="12">{_fmt(x0)}</text>'
        f'<text class="x-max" x="{LEFT + plot_w}" y="{TOP + plot_h + 16}" font-size="12" '
        f'text-anchor="end">{_fmt(x1)}</text>'
        f'<text class="x-label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" font-size="12" '
        f'text-anchor="middle">{_escape(chart.x_label)}</text>'
        f'<polyline class="series" fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/>'
        f'<g class="dots" fill="#1f77b4">{dots}</g>'
        "</svg>"
    )
