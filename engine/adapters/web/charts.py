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
from html import escape

from markupsafe import Markup

from engine.adapters import svg_drawing
from engine.adapters.svg_drawing import Frame, Point, Scale, clock, number, polyline, value_axis, value_range
from engine.domain.events import Signal

# Points drawn per series: a picture 960 units wide shows no more detail than this, and a long incident of a
# 15-second series would otherwise put tens of thousands of points on the page.
MAX_POINTS = 400
# Seconds shown before the first anomaly when no samples were kept, and the narrowest window drawn.
LEAD_S = 600.0
MIN_SPAN_S = 600.0

_WIDTH, _HEIGHT = 960, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 30, 22
_FRAME = Frame(_LEFT, _TOP, _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM)
# Markers closer than this (in picture units) share one line and one label.
_MERGE_WITHIN = 8.0


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
    """At most ``limit`` of ``points`` (in time order) that still show every spike."""
    return svg_drawing.downsample(points, limit)


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
    low, high = value_range(values)
    scale = Scale(_FRAME, window.start, window.end, low, high)
    name = str(signal.series)
    until = signal.quiet_at if signal.quiet_at is not None else signal.last_at
    summary = (
        f"{name}: anomalous from {clock(signal.first_at)} to {clock(until)}"
        f"{'' if signal.quiet_at is not None else ' (still anomalous)'}, "
        f"peak {number(signal.peak_value)} (score {signal.peak_score:.3f}) at {clock(signal.peak_at)}"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
        f'<rect class="plot" x="{_LEFT}" y="{_TOP}" width="{_FRAME.width:.1f}" height="{_FRAME.height:.1f}"/>',
    ]
    parts += value_axis(scale)
    parts += _time_axis(scale)
    band_start, band_end = scale.x(max(signal.first_at, window.start)), scale.x(min(until, window.end))
    parts.append(
        f'<rect class="anomalous" x="{band_start:.1f}" y="{_TOP}" width="{max(2.0, band_end - band_start):.1f}" '
        f'height="{_FRAME.height:.1f}"><title>{escape(_band_text(signal, until))}</title></rect>'
    )
    if len(drawn) > 1:
        parts.append(polyline(scale, drawn, "values"))
    elif drawn:
        parts.append(f'<circle class="value" cx="{scale.x(drawn[0][0]):.1f}" cy="{scale.y(drawn[0][1]):.1f}" r="2.5"/>')
    for at, value in [] if drawn else dots:
        parts.append(
            f'<circle class="known" cx="{scale.x(at):.1f}" cy="{scale.y(value):.1f}" r="3">'
            f"<title>{escape(f'{number(value)} at {clock(at)}')}</title></circle>"
        )
    parts += _markers(scale, markers)
    if window.start <= signal.peak_at <= window.end and math.isfinite(signal.peak_value):
        peak = f"peak {number(signal.peak_value)} (score {signal.peak_score:.3f}) at {clock(signal.peak_at)}"
        parts.append(
            f'<circle class="peak" cx="{scale.x(signal.peak_at):.1f}" cy="{scale.y(signal.peak_value):.1f}" r="4.5">'
            f"<title>{escape(peak)}</title></circle>"
        )
    if not drawn and not dots:
        parts.append(
            f'<text class="empty" x="{_LEFT + _FRAME.width / 2:.1f}" y="{_TOP + _FRAME.height / 2:.1f}" '
            'text-anchor="middle">no samples were kept for this signal</text>'
        )
    parts.append("</svg>")
    # Every piece of outside text above went through escape(); the rest is numbers and fixed words.
    return Markup("".join(parts))


def _time_axis(scale: Scale) -> list[str]:
    return svg_drawing.time_axis(scale, label_y=_HEIGHT - 6)


def _markers(scale: Scale, markers: Sequence[Marker]) -> list[str]:
    shown = sorted((m for m in markers if scale.start <= m.at <= scale.end), key=lambda m: m.at)
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
        full = "; ".join(f"{m.label} at {clock(m.at)}" for m in group)
        # Labels alternate between two rows, so that markers close together stay readable; in the right half of
        # the picture a label ends at its line rather than running off the edge.
        y = 11 if row % 2 == 0 else 23
        right = x > _LEFT + _FRAME.width / 2
        text_at = f'x="{x - 3:.1f}" y="{y}" text-anchor="end"' if right else f'x="{x + 3:.1f}" y="{y}"'
        parts.append(
            f'<g class="marker marker-{kind}"><title>{escape(full)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 2}" y2="{_TOP + _FRAME.height:.1f}"/>'
            f"<text {text_at}>{escape(label)}</text></g>"
        )
    return parts


def _band_text(signal: Signal, until: float) -> str:
    end = "quiet" if signal.quiet_at is not None else "last anomaly (still anomalous)"
    return (
        f"anomalous: first anomaly {clock(signal.first_at)}, {end} {clock(until)}; "
        f"{signal.count} anomalous point{'s' if signal.count != 1 else ''}"
    )
