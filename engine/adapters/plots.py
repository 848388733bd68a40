"""The picture of a backtest, as one standalone SVG file: the series with its detections and labelled windows, and
the detector's score against its threshold below, on one time axis.

SVG rather than a raster image: it is drawn with the same pieces as the on-call page's charts
(``engine.adapters.svg_drawing``), needs no plotting library, opens in any browser, and stays sharp when zoomed into
a long series. A series is drawn from at most ``MAX_POINTS`` points that keep every spike; every detection is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from engine.adapters.svg_drawing import (
    Frame,
    Point,
    Scale,
    clock,
    downsample,
    number,
    polyline,
    time_axis,
    value_axis,
    value_range,
)
from engine.core.backtest import BacktestResult

# A picture 1,400 units wide shows no more detail than this many points a line.
MAX_POINTS = 4_000
# Detections are dots; past this many the picture would be a smear, so the rest are counted in the legend only.
MAX_DOTS = 5_000

_WIDTH, _LEFT, _RIGHT = 1400, 72, 40
_VALUES = Frame(_LEFT, 44, _WIDTH - _LEFT - _RIGHT, 330)
_SCORES = Frame(_LEFT, _VALUES.bottom + 24, _VALUES.width, 110)
_HEIGHT = int(_SCORES.bottom) + 34

# A standalone file has no page stylesheet: it carries its own.
_STYLE = """
text { font: 12px sans-serif; fill: #333; }
.title { font-size: 15px; font-weight: bold; }
.plot { fill: #fff; stroke: #bbb; }
.grid { stroke: #e6e6e6; }
.tick { stroke: #888; }
.axis { fill: #666; font-size: 11px; }
.window { fill: #f2c14e; fill-opacity: 0.3; }
.values { fill: none; stroke: #1f77b4; stroke-width: 1; }
.scores { fill: none; stroke: #555; stroke-width: 1; }
.threshold { stroke: #d62728; stroke-dasharray: 6 4; }
.detection { fill: #d62728; }
"""


def backtest_svg(result: BacktestResult, *, title: str, windows: Sequence[tuple[float, float]] = ()) -> str:
    """The backtest's picture as SVG text; ``windows`` are labelled anomaly windows, epoch seconds."""
    times = np.asarray(result.timestamps, dtype=np.float64)
    values = np.asarray(result.values, dtype=np.float64)
    finite_times = times[np.isfinite(times)]
    start, end = (float(finite_times.min()), float(finite_times.max())) if finite_times.size else (0.0, 1.0)
    if end <= start:
        start, end = start - 30.0, end + 30.0
    low, high = value_range(values[np.isfinite(values)].tolist())
    values_scale = Scale(_VALUES, start, end, low, high)
    scores_scale = Scale(_SCORES, start, end, 0.0, 1.0)
    hits = np.flatnonzero(result.detections)
    dots = hits[:MAX_DOTS]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" '
        f'height="{_HEIGHT}" role="img">',
        f"<style>{_STYLE}</style>",
        f"<title>{escape(title)}</title>",
        f'<text class="title" x="{_LEFT}" y="20">{escape(title)}</text>',
        f'<text x="{_LEFT}" y="36">{_legend(result, len(hits), len(dots), len(windows))}</text>',
    ]
    for scale in (values_scale, scores_scale):
        frame = scale.frame
        parts.append(
            f'<rect class="plot" x="{frame.left:g}" y="{frame.top:g}" width="{frame.width:g}" '
            f'height="{frame.height:g}"/>'
        )
        for window_start, window_end in windows:
            left, right = max(window_start, start), min(window_end, end)
            if left <= right:
                parts.append(
                    f'<rect class="window" x="{scale.x(left):.1f}" y="{frame.top:g}" '
                    f'width="{max(1.0, scale.x(right) - scale.x(left)):.1f}" height="{frame.height:g}">'
                    f"<title>labelled window {clock(window_start, with_date=True)} to "
                    f"{clock(window_end, with_date=True)}</title></rect>"
                )
    parts += value_axis(values_scale)
    parts += value_axis(scores_scale, fractions=(0.0, 1.0))
    parts += time_axis(scores_scale, label_y=_SCORES.bottom + 18)
    parts.append(polyline(values_scale, _points(times, values), "values"))
    parts.append(polyline(scores_scale, _points(times, np.asarray(result.scores, dtype=np.float64)), "scores"))
    threshold_y = scores_scale.y(min(1.0, max(0.0, result.threshold)))
    parts.append(
        f'<line class="threshold" x1="{_SCORES.left:g}" x2="{_SCORES.left + _SCORES.width:g}" '
        f'y1="{threshold_y:.1f}" y2="{threshold_y:.1f}"><title>threshold {result.threshold:g}</title></line>'
    )
    for index in dots.tolist():
        at, value = float(times[index]), float(values[index])
        if np.isfinite(at) and np.isfinite(value):
            parts.append(
                f'<circle class="detection" cx="{values_scale.x(at):.1f}" cy="{values_scale.y(value):.1f}" r="3">'
                f"<title>{escape(number(value))} at {clock(at, with_date=True)}, score "
                f"{float(result.scores[index]):.3f}</title></circle>"
            )
    parts.append("</svg>\n")
    return "".join(parts)


def plot_backtest(
    result: BacktestResult,
    out: Path,
    *,
    title: str,
    windows: Sequence[tuple[float, float]] = (),
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(backtest_svg(result, title=title, windows=windows), encoding="utf-8")


def _points(times: np.ndarray, values: np.ndarray) -> list[Point]:
    return downsample(list(zip(times.tolist(), values.tolist(), strict=True)), MAX_POINTS)


def _legend(result: BacktestResult, hits: int, drawn: int, windows: int) -> str:
    shown = f"{hits} detection{'' if hits == 1 else 's'} (red{'' if drawn == hits else f'; the first {drawn} drawn'})"
    labelled = f"; {windows} labelled window{'s' if windows != 1 else ''} (yellow)" if windows else ""
    return escape(
        f"value (blue), {shown}{labelled}; below: {result.detector} score (grey), threshold {result.threshold:g} "
        "(dashed)"
    )
