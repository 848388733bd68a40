"""NAB v1.1 scoring: probation, the value of each detection, file scores, the corpus threshold sweep, normalisation.

The rules are those of ``docs/nab-scoring.md`` (shared docs). Everything here works on plain numpy arrays and row
indices, so it scores any corpus in the NAB layout, not only NAB itself (``detectors.nab.corpus`` loads those).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import BoolArray, FloatArray, IntArray

PROBATION_PERCENT = 0.15
PROBATION_CAP = 750
# The threshold candidate that never fires: every score is in [0, 1].
NEVER_FIRE = 1.1


class ScoringError(ValueError):
    """Raised for inputs the scoring rules cannot apply to (bad windows, scores of the wrong length or range)."""


@dataclass(frozen=True)
class CostProfile:
    """The weights of one NAB profile (``config/profiles.json``)."""

    name: str
    tp_weight: float
    fn_weight: float
    fp_weight: float


@dataclass(frozen=True)
class Window:
    """An anomaly window as inclusive row indices: rows ``start`` .. ``end`` belong to it."""

    start: int
    end: int

    @property
    def width(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class ScoredSeries:
    """One file's anomaly scores (one per row, in row order) with its anomaly windows.

    ``probation`` overrides NAB's probation rule (``probation_length``) for this file; leave it None for NAB.
    """

    scores: FloatArray
    windows: tuple[Window, ...]
    probation: int | None = None

    @property
    def first_scored(self) -> int:
        """Index of the first row that is scored."""
        if self.probation is None:
            return probation_length(len(self.scores))
        if self.probation < 0:
            raise ScoringError(f"probation cannot be {self.probation} rows")
        return self.probation


@dataclass(frozen=True)
class FileScore:
    """A file's raw score at one threshold, with its row counts over the scorable (post-probation) rows."""

    raw: float
    tp: int
    fp: int
    fn: int
    tn: int


@dataclass(frozen=True)
class SweepResult:
    """The best corpus-wide threshold for one profile and what it scores."""

    profile: CostProfile
    threshold: float
    raw: float
    score: float
    n_windows: int
    tp: int
    fp: int
    fn: int
    tn: int


def probation_length(n_rows: int) -> int:
    """Rows at the start of a file that are left out of scoring (the detector may learn from them)."""
    if n_rows < 0:
        raise ScoringError(f"a file cannot have {n_rows} rows")
    return min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP)


def scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's ``S(y)``: about +1 for y = -1 (left edge of a window), 0 at y = 0, -1 beyond y = 3."""
    # Clip the exponent: beyond y = 3 the result is -1 anyway, and exp must not overflow for y = inf.
    curve = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 4.0))) - 1.0
    return np.where(y > 3.0, -1.0, curve)


MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


def check_windows(n_rows: int, windows: Sequence[Window]) -> None:
    """Raise ``ScoringError`` unless the windows lie in the file, in order and without overlap."""
    previous_end = -1
    for window in windows:
        if not 0 <= window.start <= window.end < n_rows:
            raise ScoringError(f"window {window} does not fit a file of {n_rows} rows")
        if window.start <= previous_end:
            raise ScoringError(f"window {window} overlaps or precedes the window ending at row {previous_end}")
        previous_end = window.end


def window_ids(n_rows: int, windows: Sequence[Window]) -> IntArray:
    """For each row, the index of the window it belongs to, or -1 outside every window."""
    ids = np.full(n_rows, -1, dtype=np.int64)
    for k, window in enumerate(windows):
        ids[window.start : window.end + 1] = k
    return ids


def row_values(n_rows: int, windows: Sequence[Window], profile: CostProfile) -> FloatArray:
    """What a detection at each row is worth under ``profile`` (before the one-per-window rule)."""
    check_windows(n_rows, windows)
    rows = np.arange(n_rows, dtype=np.float64)
    # Rows before the first window are worth -fpWeight; S(inf) gives exactly that.
    y = np.full(n_rows, np.inf)
    inside = np.zeros(n_rows, dtype=np.bool_)
    for k, window in enumerate(windows):
        span = slice(window.start, window.end + 1)
        y[span] = -(window.end - rows[span] + 1.0) / window.width
        inside[span] = True
        after_end = windows[k + 1].start if k + 1 < len(windows) else n_rows
        tail = slice(window.end + 1, after_end)
        # A one-row window has no width to scale by; NAB would divide by zero, so treat every later row as far.
        y[tail] = (rows[tail] - window.end) / (window.width - 1) if window.width > 1 else np.inf
    weights = np.where(inside, profile.tp_weight / MAX_TP, profile.fp_weight)
    values: FloatArray = weights * scaled_sigmoid(y)
    return values


def _scorable_windows(series: ScoredSeries) -> list[int]:
    """Indices of the windows with at least one row after probation; windows inside probation are not scored."""
    first = series.first_scored
    return [k for k, window in enumerate(series.windows) if window.end >= first]


def score_file(series: ScoredSeries, profile: CostProfile, threshold: float) -> FileScore:
    """The raw score of one file when rows scoring ``>= threshold`` are detections."""
    scores = _checked_scores(series.scores)
    n_rows = len(scores)
    values = row_values(n_rows, series.windows, profile)
    ids = window_ids(n_rows, series.windows)
    scorable = np.arange(n_rows) >= series.first_scored
    detected = scorable & (scores >= threshold)
    outside = ids < 0
    raw = float(values[detected & outside].sum())
    for k in _scorable_windows(series):
        hits = values[detected & (ids == k)]
        raw += float(hits.max()) if len(hits) else -profile.fn_weight
    return FileScore(
        raw=raw,
        tp=int(np.count_nonzero(detected & ~outside)),
        fp=int(np.count_nonzero(detected & outside)),
        fn=int(np.count_nonzero(scorable & ~detected & ~outside)),
        tn=int(np.count_nonzero(scorable & ~detected & outside)),
    )


def count_windows(corpus: Sequence[ScoredSeries]) -> int:
    """Windows that can be scored (at least one row after probation): the N of the normalisation."""
    return sum(len(_scorable_windows(series)) for series in corpus)


def normalise(raw: float, n_windows: int, profile: CostProfile) -> float:
    """Map a corpus raw score to NAB's scale: the null detector scores 0, the perfect detector 100."""
    if n_windows <= 0:
        raise ScoringError("a corpus without scorable windows cannot be normalised")
    null = -profile.fn_weight * n_windows
    perfect = profile.tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class _Pooled:
    """The scorable rows of every file, pooled: score, detection value and global window id (-1 outside)."""

    scores: FloatArray
    values: FloatArray
    window: IntArray
    n_windows: int


def _pool(corpus: Sequence[ScoredSeries], profile: CostProfile) -> _Pooled:
    scores: list[FloatArray] = []
    values: list[FloatArray] = []
    windows: list[IntArray] = []
    n_windows = 0
    for series in corpus:
        checked = _checked_scores(series.scores)
        n_rows = len(checked)
        first = series.first_scored
        ids = window_ids(n_rows, series.windows)[first:]
        scores.append(checked[first:])
        values.append(row_values(n_rows, series.windows, profile)[first:])
        # Renumber the file's scorable windows into one id space for the whole corpus; the extra last slot
        # sends id -1 (outside every window) to -1.
        local = np.full(len(series.windows) + 1, -1, dtype=np.int64)
        kept = _scorable_windows(series)
        local[kept] = np.arange(n_windows, n_windows + len(kept))
        windows.append(local[ids])
        n_windows += len(kept)
    return _Pooled(
        scores=np.concatenate(scores) if scores else np.zeros(0),
        values=np.concatenate(values) if values else np.zeros(0),
        window=np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64),
        n_windows=n_windows,
    )


def sweep(corpus: Sequence[ScoredSeries], profile: CostProfile) -> SweepResult:
    """Pick the one threshold that maximises the corpus raw score (ties go to the higher threshold)."""
    pooled = _pool(corpus, profile)
    order = np.argsort(-pooled.scores, kind="stable")
    sorted_scores = pooled.scores[order]
    sorted_window = pooled.window[order]
    sorted_values = pooled.values[order]
    # gain[j]: how much the corpus raw score rises when the j-th highest row is switched on.
    gain = np.where(sorted_window < 0, sorted_values, 0.0)
    in_window = np.flatnonzero(sorted_window >= 0)
    # Rows of one window, in switch-on order; a window is worth the best value switched on so far.
    grouped = in_window[np.argsort(sorted_window[in_window], kind="stable")]
    bounds = np.flatnonzero(np.diff(sorted_window[grouped])) + 1
    for rows in np.split(grouped, bounds) if len(grouped) else []:
        best = np.maximum.accumulate(np.concatenate(([-profile.fn_weight], sorted_values[rows])))
        gain[rows] = np.diff(best)
    # A threshold switches on a whole run of equal scores, so only the last row of each run is a candidate.
    last_of_run: IntArray = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], len(order) > 0))
    base = -profile.fn_weight * pooled.n_windows
    raws = base + np.concatenate(([0.0], np.cumsum(gain)[last_of_run]))
    thresholds = np.concatenate(([NEVER_FIRE], sorted_scores[last_of_run]))
    # argmax keeps the first maximum, and candidates run from the highest threshold down.
    best_k = int(np.argmax(raws))
    switched_on = int(last_of_run[best_k - 1]) + 1 if best_k else 0
    return _sweep_result(profile, pooled, sorted_window, float(thresholds[best_k]), float(raws[best_k]), switched_on)


def _sweep_result(
    profile: CostProfile, pooled: _Pooled, sorted_window: IntArray, threshold: float, raw: float, switched_on: int
) -> SweepResult:
    on: BoolArray = np.arange(len(sorted_window)) < switched_on
    inside = sorted_window >= 0
    return SweepResult(
        profile=profile,
        threshold=threshold,
        raw=raw,
        score=normalise(raw, pooled.n_windows, profile),
        n_windows=pooled.n_windows,
        tp=int(np.count_nonzero(on & inside)),
        fp=int(np.count_nonzero(on & ~inside)),
        fn=int(np.count_nonzero(~on & inside)),
        tn=int(np.count_nonzero(~on & ~inside)),
    )


def _checked_scores(scores: FloatArray) -> FloatArray:
    checked = np.asarray(scores, dtype=np.float64)
    if checked.ndim != 1:
        raise ScoringError(f"scores must be one-dimensional, got shape {checked.shape}")
    if not np.all((checked >= 0.0) & (checked <= 1.0)):
        raise ScoringError("scores must be finite and in [0, 1]")
    return checked


def score_at(corpus: Sequence[ScoredSeries], profile: CostProfile, threshold: float) -> float:
    """The corpus's normalised score at one fixed threshold (no sweep): what a deployment with that threshold gets."""
    raw = sum(score_file(series, profile, threshold).raw for series in corpus)
    return normalise(raw, count_windows(corpus), profile)
