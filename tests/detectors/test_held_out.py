"""Leave-one-category-out rating: choices are made without the category scored, and the figure is on NAB's scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.base import FloatArray
from detectors.nab.corpus import Corpus, load_corpus
from detectors.nab.held_out import Candidate, leave_one_category_out
from detectors.nab.scoring import ScoringError, normalise, score_at, score_file, sweep
from tests.detectors.test_nab_scoring import UNIT, write_corpus

# Two categories, one window each; a candidate that hits a window scores 0.9 on its first row, else 0 everywhere.
FILES = {"alpha/a.csv": (100, [(50, 59)]), "beta/b.csv": (100, [(50, 59)])}


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return load_corpus(write_corpus(tmp_path / "corpus", FILES, [UNIT]))


def hits(corpus: Corpus, keys: set[str], row: int = 50) -> dict[str, FloatArray]:
    scores = {}
    for file in corpus.files:
        values = np.zeros(file.n_rows)
        if file.key in keys:
            values[row] = 0.9
        scores[file.key] = values
    return scores


def test_each_category_is_scored_with_the_choice_made_on_the_other(corpus: Corpus) -> None:
    # "alpha-only" finds alpha's window, "beta-only" finds beta's: each looks best on the category it fits, so
    # held out, each category gets the candidate fitted to the *other* one and misses its window.
    candidates = [
        Candidate(params={"fit": "alpha"}, scores=hits(corpus, {"alpha/a.csv"})),
        Candidate(params={"fit": "beta"}, scores=hits(corpus, {"beta/b.csv"})),
    ]
    result = leave_one_category_out(corpus, candidates, "unit")
    assert [(c.category, c.params["fit"]) for c in result.choices] == [("alpha", "beta"), ("beta", "alpha")]
    assert [c.raw for c in result.choices] == [-1.0, -1.0]
    assert result.held_out == pytest.approx(0.0)
    # In sample, either candidate finds one window of two.
    assert result.in_sample == pytest.approx(normalise(1.0 - 1.0, 2, corpus.profiles["unit"]))
    assert result.gap == pytest.approx(result.in_sample - result.held_out)


def test_a_candidate_that_fits_everything_keeps_its_score(corpus: Corpus) -> None:
    both = Candidate(params={"fit": "both"}, scores=hits(corpus, {"alpha/a.csv", "beta/b.csv"}))
    none = Candidate(params={"fit": "none"}, scores=hits(corpus, set()))
    result = leave_one_category_out(corpus, [none, both], "unit")
    assert {c.params["fit"] for c in result.choices} == {"both"}
    assert result.held_out == pytest.approx(100.0)
    assert result.in_sample == pytest.approx(100.0)


def test_refuses_what_it_cannot_rate(corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match="at least one candidate"):
        leave_one_category_out(corpus, [], "unit")
    single = load_corpus(write_corpus(tmp_path / "single", {"alpha/a.csv": (100, [(50, 59)])}, [UNIT]))
    with pytest.raises(ScoringError, match="two categories"):
        leave_one_category_out(single, [Candidate(params={}, scores=hits(single, set()))], "unit")


def test_score_at_a_fixed_threshold_matches_the_sweep_at_its_own_threshold(corpus: Corpus) -> None:
    scores = hits(corpus, {"alpha/a.csv"}, row=52)
    series = [file.with_scores(scores[file.key]) for file in corpus.files]
    profile = corpus.profiles["unit"]
    swept = sweep(series, profile)
    assert score_at(series, profile, swept.threshold) == pytest.approx(swept.score)
    never = normalise(sum(score_file(s, profile, 1.1).raw for s in series), 2, profile)
    assert score_at(series, profile, 1.0) == pytest.approx(never) == pytest.approx(0.0)
