"""`aiops backtest`: one detector over one recorded series, with a plot, for tuning before deploying."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from detectors.registry import UnknownDetectorError
from engine.adapters.label_windows import windows_for
from engine.adapters.series_csv import read_series_csv
from engine.app.cli_common import operator_errors
from engine.core.backtest import backtest as run_backtest
from engine.domain.errors import ConfigurationError

INSTALL_PLOT = "pip install 'aiops-engine[plot]' (the engine image: build it with --build-arg EXTRAS=plot)"


def backtest(
    csv_file: Annotated[Path, typer.Argument(help="a timestamp,value CSV file (NAB layout works)")],
    detector: Annotated[str, typer.Option(help="detector family")] = "default",
    threshold: Annotated[float | None, typer.Option(help="detection threshold (default: the detector's)")] = None,
    labels: Annotated[Path | None, typer.Option(help="labelled windows, NAB combined_windows.json format")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG of the series, scores and detections (plot extra)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False,
) -> None:
    """Run a detector over a recorded series as it would have run live; plot what it would have flagged."""
    with operator_errors():
        # Before the run, so that a missing matplotlib is said at once.
        plot_backtest = _plotter() if plot is not None else None
        timestamps, values = read_series_csv(csv_file)
        windows = windows_for(labels, csv_file) if labels is not None else []
        try:
            result = run_backtest(timestamps, values, detector=detector, threshold=threshold)
        except UnknownDetectorError as exc:
            raise ConfigurationError(str(exc)) from exc
        if plot is not None and plot_backtest is not None:
            plot_backtest(result, plot, title=f"{csv_file.name}: {detector}", windows=windows)
    hits = result.timestamps[result.detections]
    caught = sum(bool(((hits >= start) & (hits <= end)).any()) for start, end in windows)
    report = {
        "file": str(csv_file),
        "detector": detector,
        "threshold": result.threshold,
        "points": len(values),
        "detections": result.detection_count,
        "windows": len(windows),
        "windows_detected": caught,
        "plot": str(plot) if plot else None,
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        typer.echo(
            f"{csv_file.name}: {report['points']} points, {report['detections']} detections at threshold "
            f"{result.threshold:g}"
            + (f", {caught}/{len(windows)} labelled windows detected" if windows else "")
            + (f"; plot written to {plot}" if plot else "")
        )


def _plotter() -> Callable[..., None]:
    """The backtest plot: matplotlib is imported only to draw (every other command would carry it), and it is the
    ``plot`` extra, which an installation may leave out."""
    try:
        from engine.adapters.plots import plot_backtest  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        raise ConfigurationError(f"--plot draws with matplotlib, which is not installed: {INSTALL_PLOT}") from exc
    return plot_backtest
