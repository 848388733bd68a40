"""`aiops backtest`: one detector over one recorded series, with a plot, for tuning before deploying."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from detectors.registry import UnknownDetectorError
from engine.adapters.label_windows import windows_for
from engine.adapters.plots import plot_backtest
from engine.adapters.series_csv import read_series_csv
from engine.app.cli_common import operator_errors
from engine.core.backtest import backtest as run_backtest
from engine.domain.errors import ConfigurationError


def backtest(
    csv_file: Annotated[Path, typer.Argument(help="a timestamp,value CSV file (NAB layout works)")],
    detector: Annotated[str, typer.Option(help="detector family")] = "default",
    threshold: Annotated[float | None, typer.Option(help="detection threshold (default: the detector's)")] = None,
    labels: Annotated[Path | None, typer.Option(help="labelled windows, NAB combined_windows.json format")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="write an SVG picture (FILE.svg) of the series, scores and detections")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False,
) -> None:
    """Run a detector over a recorded series as it would have run live; plot what it would have flagged."""
    with operator_errors():
        # Before the run, so that a wrong name is said at once: a PNG name would hold SVG text.
        if plot is not None and plot.suffix.lower() != ".svg":
            raise ConfigurationError(f"--plot writes an SVG picture: name the file *.svg, not {plot.name}")
        timestamps, values = read_series_csv(csv_file)
        windows = windows_for(labels, csv_file) if labels is not None else []
        try:
            result = run_backtest(timestamps, values, detector=detector, threshold=threshold)
        except UnknownDetectorError as exc:
            raise ConfigurationError(str(exc)) from exc
        if plot is not None:
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
