"""The pieces every SVG picture of a time series is drawn with: the scale from time and value to picture units, the
value and time axes, at most a given number of points that still show every spike, and how numbers and times are
written. The on-call page's signal charts and ``aiops backtest --plot`` both draw with them, so that a series looks the
same in both. Every text that could come from outside goes through ``escape``; the rest is numbers and fixed words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

Point = tuple[float, float]

# Time-axis steps, seconds: the smallest that keeps the ticks at most max_ticks is used; past the last, whole days.
_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
_DAY = 86400


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a plot area lies in its picture, in picture units."""

    left: float
    top: float
    width: float
    height: float

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass(frozen=True, slots=True)
class Scale:
    """From a time in ``[start, end]`` and a value in ``[low, high]`` to a place in ``frame``."""

    frame: Frame
    start: float
    end: float
    low: float
    high: float

    def x(self, at: float) -> float:
        return self.frame.left + (at - self.start) / (self.end - self.start) * self.frame.width

    def y(self, value: float) -> float:
        return self.frame.top + (self.high - value) / (self.high - self.low) * self.frame.height


def downsample(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` of ``points`` (in time order) that still show every spike: the time range is cut into
    buckets and each keeps its lowest and highest point, in time order; the first and the last point stay."""
    finite = [(at, value) for at, value in points if math.isfinite(at) and math.isfinite(value)]
    if len(finite) <= limit:
        return finite
    buckets = max(1, (limit - 2) // 2)
    start, end = finite[0][0], finite[-1][0]
    span = (end - start) or 1.0
    lowest: dict[int, Point] = {}
    highest: dict[int, Point] = {}
    for point in finite[1:-1]:
        bucket = min(buckets - 1, int((point[0] - start) / span * buckets))
        if bucket not in lowest or point[1] < lowest[bucket][1]:
            lowest[bucket] = point
        if bucket not in highest or point[1] > highest[bucket][1]:
            highest[bucket] = point
    kept = {*lowest.values(), *highest.values()}
    return [finite[0], *sorted(kept), finite[-1]]


def value_range(values: Sequence[float]) -> tuple[float, float]:
    """A value range that holds every finite value with a little room (a flat or empty series gets some too)."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        room = abs(high) * 0.1 or 1.0
        return low - room, high + room
    room = (high - low) * 0.08
    return low - room, high + room


def polyline(scale: Scale, points: Sequence[Point], css_class: str) -> str:
    path = " ".join(f"{scale.x(at):.1f},{scale.y(value):.1f}" for at, value in points)
    return f'<polyline class="{css_class}" points="{path}"/>'


def value_axis(scale: Scale, fractions: Sequence[float] = (0.0, 0.5, 1.0)) -> list[str]:
    """Grid lines across the plot area at ``fractions`` of the value range, labelled on the left."""
    frame = scale.frame
    parts = []
    for fraction in fractions:
        value = scale.low + (scale.high - scale.low) * fraction
        y = scale.y(value)
        parts.append(
            f'<line class="grid" x1="{frame.left:g}" x2="{frame.left + frame.width:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{frame.left - 6:g}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(value))}</text>"
        )
    return parts


def time_axis(scale: Scale, label_y: float, max_ticks: int = 8) -> list[str]:
    """Ticks below the plot area at round times (UTC), labelled at ``label_y``; with dates past a day's span."""
    frame = scale.frame
    span = scale.end - scale.start
    step = next((s for s in _STEPS if span / s <= max_ticks), math.ceil(span / max_ticks / _DAY) * _DAY)
    with_date = span > _DAY
    parts = []
    tick = math.ceil(scale.start / step) * step
    while tick <= scale.end:
        x = scale.x(tick)
        label = clock(tick, with_date=with_date)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom:.1f}" y2="{frame.bottom + 4:.1f}"/>'
        )
        parts.append(f'<text class="axis" x="{x:.1f}" y="{label_y:g}" text-anchor="middle">{label}</text>')
        tick += step
    return parts


def number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def clock(at: float, *, with_date: bool = False) -> str:
    if not math.isfinite(at):
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M" if with_date else "%H:%M")
