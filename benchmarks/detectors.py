"""Detector speed: river's HalfSpaceTrees one point at a time (the baseline) against a registered detector, one point
at a time and through its batch path over many interleaved series, with the bytes of state it keeps per series.

    python -m benchmarks.detectors [--detector NAME] [--series N] [--points-per-series K] [--batches B] [--json]

The batch run feeds B batches; each holds K points of every one of the N series, taken series by series in turn
(as a scrape of N series K times would arrive, in an order unrelated to the slot numbers), so every batch updates
each slot K times, in order. Throughputs are
points per second on one core, measured with ``time.perf_counter`` around the scoring calls only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from river import anomaly, preprocessing

from detectors import registry
from detectors.base import FloatArray

BASELINE_POINTS = 5_000
ONE_POINT_POINTS = 20_000
# Seconds between points of one series: a 15 s scrape interval.
STEP_S = 15.0


@dataclass(frozen=True)
class Figures:
    """What the benchmark measured."""

    detector: str
    baseline_points_per_s: float
    one_point_points_per_s: float
    batch_points_per_s: float
    batch_series: int
    batch_points: int
    batch_size: int
    one_point_vs_baseline: float
    batch_vs_baseline: float
    state_bytes_per_series: float
    snapshot_json_bytes: int


def _series(n: int, seed: int) -> FloatArray:
    """A noisy daily-ish wave with a few spikes: enough structure that the detectors do their usual work."""
    rng = np.random.default_rng(seed)
    wave = 10.0 + np.sin(np.arange(n) * 2 * np.pi / 5760.0)
    noisy: FloatArray = wave + rng.normal(0.0, 0.3, n)
    noisy[rng.integers(0, n, n // 500)] += 5.0
    return noisy


def measure_baseline(values: FloatArray) -> float:
    """river ``MinMaxScaler | HalfSpaceTrees``, score then learn, one point at a time."""
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    started = time.perf_counter()
    for value in values.tolist():
        point = {"value": value}
        model.score_one(point)
        model.learn_one(point)
    return len(values) / (time.perf_counter() - started)


def measure_one_point(name: str, values: FloatArray) -> float:
    """The registered detector's one-series shape, one point at a time."""
    detector = registry.build_one(name)
    stamps = (np.arange(len(values)) * STEP_S).tolist()
    started = time.perf_counter()
    for stamp, value in zip(stamps, values.tolist(), strict=True):
        detector.update(stamp, value)
    return len(values) / (time.perf_counter() - started)


def measure_batch(name: str, series: int, per_series: int, batches: int) -> tuple[float, int, float, int]:
    """Points/s of the batch shape, total points, numpy state bytes per series and one slot's JSON snapshot size."""
    detector = registry.build_batch(name, series)
    rng = np.random.default_rng(7)
    level = rng.uniform(1.0, 100.0, series)
    # Series reach the batch in an order unrelated to their slots (slots are handed out as series first appear).
    slots = np.tile(rng.permutation(series).astype(np.int64), per_series)
    rounds = np.repeat(np.arange(per_series), series)
    elapsed = 0.0
    for batch in range(batches):
        stamps = ((batch * per_series + rounds) * STEP_S).astype(np.float64)
        values = level[slots] * (1.0 + 0.05 * rng.standard_normal(len(slots)))
        started = time.perf_counter()
        detector.update_batch(slots, stamps, values)
        elapsed += time.perf_counter() - started
    points = batches * len(slots)
    state_bytes = getattr(detector, "state_bytes", None)
    per_series_bytes = float("nan") if state_bytes is None else state_bytes / detector.capacity
    snapshot_bytes = len(json.dumps(detector.snapshot_slot(0)))
    return points / elapsed, points, per_series_bytes, snapshot_bytes


def run(name: str, series: int, per_series: int, batches: int) -> Figures:
    """The whole benchmark."""
    baseline = measure_baseline(_series(BASELINE_POINTS, seed=1))
    one_point = measure_one_point(name, _series(ONE_POINT_POINTS, seed=2))
    batch, points, state_bytes, snapshot_bytes = measure_batch(name, series, per_series, batches)
    return Figures(
        detector=name,
        baseline_points_per_s=baseline,
        one_point_points_per_s=one_point,
        batch_points_per_s=batch,
        batch_series=series,
        batch_points=points,
        batch_size=series * per_series,
        one_point_vs_baseline=one_point / baseline,
        batch_vs_baseline=batch / baseline,
        state_bytes_per_series=state_bytes,
        snapshot_json_bytes=snapshot_bytes,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detectors", description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default=registry.DEFAULT_DETECTOR, choices=registry.names())
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--points-per-series", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    figures = run(args.detector, args.series, args.points_per_series, args.batches)
    if args.json:
        print(json.dumps(asdict(figures)))
        return 0
    print(f"river HalfSpaceTrees, one point:  {figures.baseline_points_per_s:>12,.0f} points/s")
    print(
        f"{figures.detector}, one point:  {figures.one_point_points_per_s:>12,.0f} points/s"
        f"  ({figures.one_point_vs_baseline:.1f}x baseline)"
    )
    print(
        f"{figures.detector}, batch of {figures.batch_size:,} over {figures.batch_series:,} series:"
        f"  {figures.batch_points_per_s:>12,.0f} points/s  ({figures.batch_vs_baseline:.0f}x baseline)"
    )
    print(
        f"state per series: {figures.state_bytes_per_series:.0f} bytes of numpy arrays,"
        f" {figures.snapshot_json_bytes} bytes as a JSON snapshot"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
