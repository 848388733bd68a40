"""Pictures of an incident's signals for the on-call page, drawn on the server as inline SVG.

Each picture shows one series around the incident on a time axis shared by all of the incident's pictures (so that
onsets line up from one to the next): its values, the stretch it was anomalous (first anomaly to quiet, or to its
last anomaly while still anomalous), its peak, and vertical markers for the incident's opening and resolution and
its actions. No script runs on the page (its policy allows none): the SVG is all there is, styled by the page's
stylesheet, with ``<title>`` elements as tooltips. Every text in it is escaped (series labels come from outside),
and a series is drawn from at most ``MAX_POINTS`` points, however many samples were kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from engine.domain.events import Signal

Point = tuple[float, float]

# Points drawn per series: a picture 960 units wide shows no more detail than this, and a long incident of a
# 15-second series would otherwise put tens of thousands of points on the page.
MAX_POINTS = 400
# Seconds shown before the first anomaly when no samples were kept, and the narrowest window drawn.
LEAD_S = 600.0
MIN_SPAN_S = 600.0

_WIDTH, _HEIGHT = 960, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 30, 22
# Markers closer than this (in picture units) share one line and one label.
_MERGE_WITHIN = 8.0
# Time-axis steps, seconds: the smallest that keeps the ticks at most _MAX_TICKS is used.
_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
_MAX_TICKS = 8


@dataclass(frozen=True, slots=True)
class Marker:
    """A moment drawn across every picture: ``kind`` is "incident" (opened, resolved) or "action"."""

    at: float
    label: str
    kind: str = "incident"


@dataclass(frozen=True, slots=True)
class Window:
    """The time span every picture of one incident shows."""

    start: float
    end: float


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
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


def window_of(signals: Sequence[Signal], points: Iterable[Sequence[Point]], markers: Sequence[Marker]) -> Window:
    """The span that holds every signal's anomalies, the kept samples and the incident's markers, with a little
    room. Actions do not widen it: an action is stamped with the clock of the engine that ran it, which for a
    replayed incident can be months after its signals; one outside the span is not drawn."""
    moments = [at for signal in signals for at in (signal.first_at - LEAD_S, signal.last_at, signal.quiet_at or 0.0)]
    moments += [at for series in points for at in (series[0][0], series[-1][0]) if series]
    moments += [marker.at for marker in markers if marker.kind != "action"]
    moments = [at for at in moments if at > 0.0 and math.isfinite(at)]
    if not moments:
        return Window(0.0, MIN_SPAN_S)
    start, end = min(moments), max(moments)
    if end - start < MIN_SPAN_S:
        middle = (start + end) / 2
        start, end = middle - MIN_SPAN_S / 2, middle + MIN_SPAN_S / 2
    room = (end - start) * 0.02
    return Window(start - room, end + room)


def signal_chart(
    signal: Signal,
    points: Sequence[Point],
    window: Window,
    markers: Sequence[Marker] = (),
    known: Sequence[Point] = (),
) -> Markup:
    """One signal's picture. ``points`` are its kept samples; ``known`` the values recorded with its anomalies in
    the timeline, drawn as dots when no samples were kept."""
    drawn = downsample([p for p in points if window.start <= p[0] <= window.end])
    dots = [p for p in known if math.isfinite(p[1]) and window.start <= p[0] <= window.end]
    values = [value for _, value in drawn or dots]
    if math.isfinite(signal.peak_value):
        values.append(signal.peak_value)
    low, high = _value_range(values)
    scale = _Scale(window, low, high)
    name = str(signal.series)
    until = signal.quiet_at if signal.quiet_at is not None else signal.last_at
    summary = (
        f"{name}: anomalous from {_clock(signal.first_at)} to {_clock(until)}"
        f"{'' if signal.quiet_at is not None else ' (still anomalous)'}, "
        f"peak {_number(signal.peak_value)} (score {signal.peak_score:.3f}) at {_clock(signal.peak_at)}"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
        f'<rect class="plot" x="{_LEFT}" y="{_TOP}" width="{scale.width:.1f}" height="{scale.height:.1f}"/>',
    ]
    parts += _value_axis(scale)
    parts += _time_axis(scale)
    band_start, band_end = scale.x(max(signal.first_at, window.start)), scale.x(min(until, window.end))
    parts.append(
        f'<rect class="anomalous" x="{band_start:.1f}" y="{_TOP}" width="{max(2.0, band_end - band_start):.1f}" '
        f'height="{scale.height:.1f}"><title>{escape(_band_text(signal, until))}</title></rect>'
    )
    if len(drawn) > 1:
        path = " ".join(f"{scale.x(at):.1f},{scale.y(value):.1f}" for at, value in drawn)
        parts.append(f'<polyline class="values" points="{path}"/>')
    elif drawn:
        parts.append(f'<circle class="value" cx="{scale.x(drawn[0][0]):.1f}" cy="{scale.y(drawn[0][1]):.1f}" r="2.5"/>')
    for at, value in [] if drawn else dots:
        parts.append(
            f'<circle class="known" cx="{scale.x(at):.1f}" cy="{scale.y(value):.1f}" r="3">'
            f"<title>{escape(f'{_number(value)} at {_clock(at)}')}</title></circle>"
        )
    parts += _markers(scale, markers)
    if window.start <= signal.peak_at <= window.end and math.isfinite(signal.peak_value):
        peak = f"peak {_number(signal.peak_value)} (score {signal.peak_score:.3f}) at {_clock(signal.peak_at)}"
        parts.append(
            f'<circle class="peak" cx="{scale.x(signal.peak_at):.1f}" cy="{scale.y(signal.peak_value):.1f}" r="4.5">'
            f"<title>{escape(peak)}</title></circle>"
        )
    if not drawn and not dots:
        parts.append(
            f'<text class="empty" x="{_LEFT + scale.width / 2:.1f}" y="{_TOP + scale.height / 2:.1f}" '
            'text-anchor="middle">no samples were kept for this signal</text>'
        )
    parts.append("</svg>")
    # Every piece of outside text above went through escape(); the rest is numbers and fixed words.
    return Markup("".join(parts))


class _Scale:
    def __init__(self, window: Window, low: float, high: float) -> None:
        self.window, self.low, self.high = window, low, high
        self.width = _WIDTH - _LEFT - _RIGHT
        self.height = _HEIGHT - _TOP - _BOTTOM

    def x(self, at: float) -> float:
        return _LEFT + (at - self.window.start) / (self.window.end - self.window.start) * self.width

    def y(self, value: float) -> float:
        return _TOP + (self.high - value) / (self.high - self.low) * self.height


def _value_range(values: Sequence[float]) -> tuple[float, float]:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        room = abs(high) * 0.1 or 1.0
        return low - room, high + room
    room = (high - low) * 0.08
    return low - room, high + room


def _value_axis(scale: _Scale) -> list[str]:
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        value = scale.low + (scale.high - scale.low) * fraction
        y = scale.y(value)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + scale.width:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_number(value))}</text>'
        )
    return parts


def _time_axis(scale: _Scale) -> list[str]:
    span = scale.window.end - scale.window.start
    step = next((s for s in _STEPS if span / s <= _MAX_TICKS), math.ceil(span / _MAX_TICKS))
    with_date = span > 86400
    parts = []
    tick = math.ceil(scale.window.start / step) * step
    while tick <= scale.window.end:
        x = scale.x(tick)
        label = _clock(tick, with_date=with_date)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP + scale.height:.1f}" '
            f'y2="{_TOP + scale.height + 4:.1f}"/>'
        )
        parts.append(f'<text class="axis" x="{x:.1f}" y="{_HEIGHT - 6}" text-anchor="middle">{label}</text>')
        tick += step
    return parts


def _markers(scale: _Scale, markers: Sequence[Marker]) -> list[str]:
    shown = sorted((m for m in markers if scale.window.start <= m.at <= scale.window.end), key=lambda m: m.at)
    groups: list[list[Marker]] = []
    for marker in shown:
        if groups and scale.x(marker.at) - scale.x(groups[-1][0].at) < _MERGE_WITHIN:
            groups[-1].append(marker)
        else:
            groups.append([marker])
    parts = []
    for row, group in enumerate(groups):
        x = scale.x(group[0].at)
        kind = "action" if all(m.kind == "action" for m in group) else "incident"
        labels = list(dict.fromkeys(m.label for m in group))
        label = labels[0] if len(labels) == 1 else f"{labels[0]} · {len(labels) - 1} more"
        full = "; ".join(f"{m.label} at {_clock(m.at)}" for m in group)
        # Labels alternate between two rows, so that markers close together stay readable; in the right half of
        # the picture a label ends at its line rather than running off the edge.
        y = 11 if row % 2 == 0 else 23
        right = x > _LEFT + scale.width / 2
        text_at = f'x="{x - 3:.1f}" y="{y}" text-anchor="end"' if right else f'x="{x + 3:.1f}" y="{y}"'
        parts.append(
            f'<g class="marker marker-{kind}"><title>{escape(full)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 2}" y2="{_TOP + scale.height:.1f}"/>'
            f"<text {text_at}>{escape(label)}</text></g>"
        )
    return parts


def _band_text(signal: Signal, until: float) -> str:
    end = "quiet" if signal.quiet_at is not None else "last anomaly (still anomalous)"
    return (
        f"anomalous: first anomaly {_clock(signal.first_at)}, {end} {_clock(until)}; "
        f"{signal.count} anomalous point{'s' if signal.count != 1 else ''}"
    )


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _clock(at: float, *, with_date: bool = False) -> str:
    if not math.isfinite(at):
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M" if with_date else "%H:%M")
