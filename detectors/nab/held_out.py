"""Leave-one-category-out rating: how a detector does on a category whose data took no part in choosing it.

NAB's own figure is in-sample twice over: the threshold is swept on the very rows it is scored on, and a detector's
parameters are usually picked on the same corpus. Here, for each category of a corpus in turn, the parameter set
(one of a grid of candidates) and the threshold are both chosen on the *other* categories, by their swept score;
the held-out category is then scored with that choice. The held-out files' raw scores are pooled and normalised
over the corpus's windows, so the figure sits on NAB's scale beside the in-sample one. A gap of a few points says
the choices carry over; a large one says they fit the corpus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from detectors.base import FloatArray
from detectors.nab.corpus import Corpus, CorpusFile
from detectors.nab.scoring import CostProfile, ScoringError, count_windows, normalise, score_file, sweep

# Scores of every file of a corpus for one candidate parameter set, keyed by file key.
CandidateScores = Mapping[str, FloatArray]


@dataclass(frozen=True)
class Candidate:
    """One parameter set of the grid and its scores on every file."""

    params: Mapping[str, Any]
    scores: CandidateScores


@dataclass(frozen=True)
class CategoryChoice:
    """What was chosen without one category, and what the category then scored (raw, unnormalised)."""

    category: str
    params: Mapping[str, Any]
    threshold: float
    raw: float


@dataclass(frozen=True)
class HeldOutResult:
    """One profile's leave-one-category-out score beside the best in-sample score of the same grid."""

    profile: str
    held_out: float
    in_sample: float
    in_sample_params: Mapping[str, Any]
    choices: tuple[CategoryChoice, ...]

    @property
    def gap(self) -> float:
        return self.in_sample - self.held_out


def category_of(file: CorpusFile) -> str:
    """The category of a file: the directory its key starts with."""
    return file.key.partition("/")[0]


def _swept(files: Sequence[CorpusFile], candidate: Candidate, profile: CostProfile) -> tuple[float, float]:
    result = sweep([file.with_scores(candidate.scores[file.key]) for file in files], profile)
    return result.score, result.threshold


def _best(files: Sequence[CorpusFile], candidates: Sequence[Candidate], profile: CostProfile) -> tuple[int, float]:
    """The index of the candidate with the best swept score on ``files`` (the first on a tie) and its threshold."""
    rated = [_swept(files, candidate, profile) for candidate in candidates]
    best = max(range(len(rated)), key=lambda k: (rated[k][0], -k))
    return best, rated[best][1]


def leave_one_category_out(corpus: Corpus, candidates: Sequence[Candidate], profile_name: str) -> HeldOutResult:
    """Rate ``candidates`` on ``corpus`` under one profile, each category held out in turn."""
    if not candidates:
        raise ScoringError("leave-one-category-out needs at least one candidate parameter set")
    profile = corpus.profiles[profile_name]
    categories = sorted({category_of(file) for file in corpus.files})
    if len(categories) < 2:
        raise ScoringError("leave-one-category-out needs a corpus of two categories or more")
    choices: list[CategoryChoice] = []
    for category in categories:
        rest = [file for file in corpus.files if category_of(file) != category]
        held = [file for file in corpus.files if category_of(file) == category]
        if not count_windows([file.with_scores(candidates[0].scores[file.key]) for file in rest]):
            raise ScoringError(f"without category {category!r} no scorable window is left to choose on")
        best, threshold = _best(rest, candidates, profile)
        chosen = candidates[best]
        raw = sum(score_file(file.with_scores(chosen.scores[file.key]), profile, threshold).raw for file in held)
        choices.append(CategoryChoice(category=category, params=chosen.params, threshold=threshold, raw=raw))
    n_windows = count_windows([file.with_scores(candidates[0].scores[file.key]) for file in corpus.files])
    held_out = normalise(sum(choice.raw for choice in choices), n_windows, profile)
    best_all, _ = _best(corpus.files, candidates, profile)
    in_sample, _ = _swept(corpus.files, candidates[best_all], profile)
    return HeldOutResult(
        profile=profile_name,
        held_out=held_out,
        in_sample=in_sample,
        in_sample_params=candidates[best_all].params,
        choices=tuple(choices),
    )
