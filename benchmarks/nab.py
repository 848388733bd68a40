"""The NAB benchmark: run a detector over every file of a NAB-layout corpus and print its NAB scores.

    python -m benchmarks.nab --detector NAME [--param key=value ...] [--corpus DIR] [--scores-dir DIR] [--json]
    python -m benchmarks.nab --from-scores DIR [--corpus DIR] [--json]
    python -m benchmarks.nab --detector NAME --leave-one-out [--grid key=v1,v2 ...] [--corpus DIR] [--json]

Each file is fed row by row (timestamps as epoch seconds) to a fresh detector built with the same parameters; the
scores are then rated under every profile of the corpus with one corpus-wide threshold per profile (NAB's sweep).
``--from-scores`` rates saved scores instead, in this runner's ``--scores-dir`` layout or NAB's
``results/<detector>/<category>/<detector>_<file>.csv``. ``elapsed_s`` and ``points_per_s`` time the detectors
only; ``scoring_s`` times the sweep. Beside each swept score the report gives the score at the family's fixed
default threshold (the engine's threshold when a user sets none), since a deployment cannot sweep.

``--leave-one-out`` rates generalisation instead (``detectors.nab.held_out``): each category of the corpus is scored
with the parameter set (from the ``--grid`` candidates, crossed with the fixed ``--param`` values) and threshold
chosen on the other categories. These runs use the families' batch shape, all files at once, which by the
detectors' contract gives the scores of the one-point path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from detectors import registry
from detectors.base import Detector, FloatArray
from detectors.nab.corpus import Corpus, CorpusFile, CorpusLayoutError, load_corpus, read_scores, write_scores
from detectors.nab.held_out import Candidate, HeldOutResult, leave_one_category_out
from detectors.nab.scoring import ScoringError, SweepResult, score_at, sweep

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
# Rows between progress-bar refreshes: refreshing on every row would cost more than a cheap detector.
PROGRESS_STEP = 4096

DetectorFactory = Callable[[], Detector]
# Told (rows just scored, whether the file is finished) as the run goes.
ProgressHook = Callable[[int, bool], None]


class DetectorContractError(ValueError):
    """Raised when a detector returns a score outside [0, 1] or not a number."""


@dataclass(frozen=True)
class DetectionRun:
    """Every file's scores from one detector, and how long the detectors took."""

    scores: Mapping[str, FloatArray]
    elapsed_s: float


@dataclass(frozen=True)
class Report:
    """What the benchmark prints: the detector, the corpus size, timings and one sweep result per profile."""

    detector: str
    params: Mapping[str, Any]
    files: int
    rows: int
    elapsed_s: float | None
    scoring_s: float
    results: Mapping[str, SweepResult]
    # The family's default threshold and each profile's score at it; None where the detector is not a family.
    fixed_threshold: float | None = None
    at_fixed_threshold: Mapping[str, float] | None = None

    @property
    def points_per_s(self) -> float | None:
        if self.elapsed_s is None or self.elapsed_s <= 0:
            return None
        return self.rows / self.elapsed_s

    def as_json(self) -> dict[str, Any]:
        profiles = {name: result.score for name, result in self.results.items()}
        return {
            "detector": self.detector,
            "params": dict(self.params),
            **profiles,
            "thresholds": {name: result.threshold for name, result in self.results.items()},
            "fixed_threshold": self.fixed_threshold,
            "at_fixed_threshold": dict(self.at_fixed_threshold) if self.at_fixed_threshold is not None else None,
            "counts": {
                name: {"tp": result.tp, "fp": result.fp, "fn": result.fn, "tn": result.tn}
                for name, result in self.results.items()
            },
            "windows": next(iter(self.results.values())).n_windows if self.results else 0,
            "files": self.files,
            "rows": self.rows,
            "elapsed_s": self.elapsed_s,
            "points_per_s": self.points_per_s,
            "scoring_s": self.scoring_s,
        }


def score_series(detector: Detector, file: CorpusFile, hook: ProgressHook | None = None) -> FloatArray:
    """Feed ``file`` to ``detector`` one row at a time and collect its scores."""
    scores = np.empty(file.n_rows, dtype=np.float64)
    pending = 0
    for i, (stamp, value) in enumerate(zip(file.timestamps.tolist(), file.values.tolist(), strict=True)):
        scores[i] = detector.update(stamp, value)
        pending += 1
        if hook is not None and pending == PROGRESS_STEP:
            hook(pending, False)
            pending = 0
    if hook is not None:
        hook(pending, True)
    bad = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))
    if len(bad):
        raise DetectorContractError(f"{file.key}: row {bad[0]} scored {float(scores[bad[0]])!r}, outside [0, 1]")
    return scores


def run_detector(
    corpus: Corpus,
    factory: DetectorFactory,
    hook: ProgressHook | None = None,
    scores_dir: Path | None = None,
) -> DetectionRun:
    """Score every file of ``corpus`` with a fresh detector from ``factory``; optionally save the scores."""
    scores: dict[str, FloatArray] = {}
    elapsed = 0.0
    for file in corpus.files:
        started = time.perf_counter()
        scores[file.key] = score_series(factory(), file, hook)
        elapsed += time.perf_counter() - started
        if scores_dir is not None:
            write_scores(scores_dir, file, scores[file.key])
    return DetectionRun(scores=scores, elapsed_s=elapsed)


def load_saved_scores(corpus: Corpus, scores_dir: Path) -> dict[str, FloatArray]:
    """Scores saved earlier for every file of ``corpus`` (see ``detectors.nab.corpus.scores_path``)."""
    if not scores_dir.is_dir():
        raise CorpusLayoutError(f"{scores_dir}: scores directory not found")
    return {file.key: read_scores(scores_dir, file) for file in corpus.files}


def evaluate(
    corpus: Corpus,
    scores: Mapping[str, FloatArray],
    detector: str,
    params: Mapping[str, Any],
    elapsed_s: float | None,
    fixed_threshold: float | None = None,
) -> Report:
    """Sweep every profile of ``corpus`` over ``scores`` and gather the report; with ``fixed_threshold``, also
    rate each profile at that threshold."""
    series = [file.with_scores(scores[file.key]) for file in corpus.files]
    started = time.perf_counter()
    results = {name: sweep(series, profile) for name, profile in corpus.profiles.items()}
    at_fixed = (
        {name: score_at(series, profile, fixed_threshold) for name, profile in corpus.profiles.items()}
        if fixed_threshold is not None
        else None
    )
    return Report(
        detector=detector,
        params=params,
        files=len(corpus.files),
        rows=corpus.n_rows,
        elapsed_s=elapsed_s,
        scoring_s=time.perf_counter() - started,
        results=results,
        fixed_threshold=fixed_threshold,
        at_fixed_threshold=at_fixed,
    )


def benchmark(
    corpus: Corpus,
    factory: DetectorFactory,
    detector: str,
    params: Mapping[str, Any],
    hook: ProgressHook | None = None,
    scores_dir: Path | None = None,
) -> Report:
    """Run ``factory``'s detectors over ``corpus`` and score them: the whole benchmark, minus the CLI."""
    run = run_detector(corpus, factory, hook, scores_dir)
    fixed = registry.get(detector).default_threshold if detector in registry.names() else None
    return evaluate(corpus, run.scores, detector, params, run.elapsed_s, fixed)


def run_batch(corpus: Corpus, name: str, params: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Every file's scores from one batch detector of family ``name``, a slot per file, rows fed in step."""
    files = corpus.files
    batch = registry.build_batch(name, len(files), **params)
    slots = np.concatenate([np.full(file.n_rows, k, dtype=np.int64) for k, file in enumerate(files)])
    rows = np.concatenate([np.arange(file.n_rows) for file in files])
    # Row-major interleaving (every file's row 0, then every file's row 1, ...) is how live series arrive.
    order = np.lexsort((slots, rows))
    stamps = np.concatenate([file.timestamps for file in files])[order]
    values = np.concatenate([file.values for file in files])[order]
    scores = np.empty(len(order))
    scores[order] = batch.update_batch(slots[order], stamps, values)
    bounds = np.cumsum([0, *(file.n_rows for file in files)])
    return {file.key: scores[bounds[k] : bounds[k + 1]] for k, file in enumerate(files)}


def parse_grid(pairs: Sequence[str], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The candidate parameter sets: the cross product of every ``key=v1,v2,...`` pair, each with ``fixed``."""
    axes: list[tuple[str, list[Any]]] = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or not text:
            raise argparse.ArgumentTypeError(f"--grid expects key=v1,v2,..., got {pair!r}")
        axes.append((key, [parse_params([f"{key}={item}"])[key] for item in text.split(",")]))
    grid: list[dict[str, Any]] = [dict(fixed)]
    for key, choices in axes:
        grid = [{**point, key: choice} for point in grid for choice in choices]
    return grid


def held_out(corpus: Corpus, name: str, grid: Sequence[Mapping[str, Any]]) -> list[HeldOutResult]:
    """Leave-one-category-out results of family ``name`` over ``grid``, one per profile of the corpus."""
    candidates = [Candidate(params=dict(params), scores=run_batch(corpus, name, params)) for params in grid]
    return [leave_one_category_out(corpus, candidates, profile) for profile in corpus.profiles]


def held_out_json(results: Sequence[HeldOutResult]) -> dict[str, Any]:
    """The leave-one-category-out results as one JSON object."""
    return {
        result.profile: {
            "held_out": result.held_out,
            "in_sample": result.in_sample,
            "gap": result.gap,
            "in_sample_params": dict(result.in_sample_params),
            "choices": [
                {"category": c.category, "params": dict(c.params), "threshold": c.threshold, "raw": c.raw}
                for c in result.choices
            ],
        }
        for result in results
    }


def render_held_out(name: str, results: Sequence[HeldOutResult], console: Console) -> None:
    """Print leave-one-category-out results for people."""
    console.print(f"NAB leave-one-category-out: [bold]{name}[/]")
    table = Table(
        "profile", "held out", "in sample", "gap", caption="each category scored with choices made without it"
    )
    for result in results:
        table.add_row(result.profile, f"{result.held_out:.3f}", f"{result.in_sample:.3f}", f"{result.gap:.3f}")
    console.print(table)
    first = results[0]
    choices = Table("held out", "parameters chosen", "threshold", caption=f"choices under {first.profile}")
    for choice in first.choices:
        params = ", ".join(f"{key}={value}" for key, value in choice.params.items()) or "(defaults)"
        choices.add_row(choice.category, params, f"{choice.threshold:.6g}")
    console.print(choices)


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans, null), else as text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--param expects key=value, got {pair!r}")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def render_table(report: Report, console: Console) -> None:
    """Print ``report`` for people."""
    pace = f", {report.points_per_s:,.0f} points/s" if report.points_per_s is not None else ""
    elapsed = f", detectors {report.elapsed_s:.1f} s" if report.elapsed_s is not None else ""
    params = f" {dict(report.params)}" if report.params else ""
    console.print(
        f"NAB: [bold]{report.detector}[/]{params} on {report.files} files, "
        f"{report.rows:,} rows{elapsed}{pace}, sweep {report.scoring_s:.2f} s"
    )
    table = Table(
        Column("profile", no_wrap=True),
        "score",
        Column("threshold", no_wrap=True),
        *("TP", "FP", "FN", "TN"),
        Column(f"at {report.fixed_threshold:g}" if report.fixed_threshold is not None else "fixed", no_wrap=True),
        caption="TP/FP/FN/TN count scorable rows at the profile's swept threshold; the last column scores the "
        "family's fixed default threshold",
    )
    for name, result in report.results.items():
        fixed = report.at_fixed_threshold.get(name) if report.at_fixed_threshold is not None else None
        table.add_row(
            name,
            f"{result.score:.3f}",
            f"{result.threshold:.6g}",
            *(f"{count:,}" for count in (result.tp, result.fp, result.fn, result.tn)),
            f"{fixed:.3f}" if fixed is not None else "-",
        )
    console.print(table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nab", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus in the NAB layout")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--detector", help=f"registry name; one of: {', '.join(registry.names()) or '(none)'}")
    source.add_argument("--from-scores", type=Path, metavar="DIR", help="rate saved scores, run no detector")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="detector parameter")
    parser.add_argument("--scores-dir", type=Path, metavar="DIR", help="save each file's scores as CSV here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--leave-one-out", action="store_true", help="rate each category with choices made on the others"
    )
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2", help="candidate values for --leave-one-out"
    )
    return parser


def _run_with_progress(corpus: Corpus, name: str, params: Mapping[str, Any], scores_dir: Path | None) -> Report:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        files_task = progress.add_task("files", total=len(corpus.files))
        rows_task = progress.add_task("rows", total=corpus.n_rows)

        def hook(rows: int, finished: bool) -> None:
            progress.advance(rows_task, rows)
            if finished:
                progress.advance(files_task)

        return benchmark(corpus, lambda: registry.build_one(name, **params), name, params, hook, scores_dir)


def _check_params(name: str, params: Mapping[str, Any]) -> None:
    """Build one detector up front so that a wrong name or parameter fails before any progress bar."""
    try:
        registry.build_one(name, **params)
    except TypeError as exc:
        raise argparse.ArgumentTypeError(f"detector {name!r} rejects parameters {dict(params)}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.scores_dir is not None and args.from_scores is not None:
        parser.error("--scores-dir saves a detector's scores; it does not go with --from-scores")
    if (args.leave_one_out or args.grid) and args.detector is None:
        parser.error("--leave-one-out and --grid rate a detector: give --detector")
    if args.grid and not args.leave_one_out:
        parser.error("--grid gives the candidates of --leave-one-out")
    try:
        params = parse_params(args.param)
        corpus = load_corpus(args.corpus)
        if args.leave_one_out:
            grid = parse_grid(args.grid, params)
            for point in grid:
                _check_params(args.detector, point)
            results = held_out(corpus, args.detector, grid)
        elif args.from_scores is not None:
            scores = load_saved_scores(corpus, args.from_scores)
            report = evaluate(corpus, scores, args.from_scores.name, params, None)
        else:
            _check_params(args.detector, params)
            report = _run_with_progress(corpus, args.detector, params, args.scores_dir)
    except (argparse.ArgumentTypeError, CorpusLayoutError, ScoringError, DetectorContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except registry.UnknownDetectorError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.leave_one_out:
        if args.json:
            print(json.dumps({"detector": args.detector, **held_out_json(results)}, indent=2))
        else:
            render_held_out(args.detector, results, Console())
        return 0
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        render_table(report, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
