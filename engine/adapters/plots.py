"""Pictures of a series: its values with detections and labelled windows, and the detector's score below."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt

from engine.core.backtest import BacktestResult


def plot_backtest(
    result: BacktestResult,
    out: Path,
    *,
    title: str,
    windows: Sequence[tuple[float, float]] = (),
) -> None:
    times = [datetime.fromtimestamp(t, tz=UTC) for t in result.timestamps]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True, height_ratios=(3, 1))
    top.plot(times, result.values, linewidth=0.7, color="#1f77b4", label="value")
    for index, (start, end) in enumerate(windows):
        for axis in (top, bottom):
            axis.axvspan(
                datetime.fromtimestamp(start, tz=UTC),
                datetime.fromtimestamp(end, tz=UTC),
                color="#f2c14e",
                alpha=0.3,
                label="labelled window" if index == 0 and axis is top else None,
            )
    hits = result.detections.nonzero()[0]
    top.scatter(
        [times[i] for i in hits],
        result.values[hits],
        color="#d62728",
        s=18,
        zorder=3,
        label=f"detections ({len(hits)})",
    )
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small")
    bottom.plot(times, result.scores, linewidth=0.7, color="#555555", label=f"{result.detector} score")
    bottom.axhline(result.threshold, color="#d62728", linestyle="--", linewidth=0.8, label="threshold")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
