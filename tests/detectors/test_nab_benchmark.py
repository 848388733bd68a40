"""The NAB benchmark runner, driven with a tiny detector defined here (the registry may still be empty)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import nab as runner
from detectors import registry
from detectors.base import Detector, State
from detectors.nab.corpus import Corpus, CorpusFile, load_corpus
from detectors.nab.scoring import sweep
from tests.detectors.test_nab_scoring import NAB_ROOT, NUMENTA, ODD, SYNTHETIC, UNIT, write_corpus


class JumpDetector(Detector):
    """Scores the jump from the previous value, scaled and capped at 1; remembers every point it was fed."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.previous: float | None = None
        self.seen: list[tuple[float, float]] = []

    def update(self, timestamp: float, value: float) -> float:
        self.seen.append((timestamp, value))
        jump = 0.0 if self.previous is None else abs(value - self.previous)
        self.previous = value
        return min(1.0, jump / self.scale)

    def snapshot(self) -> State:
        return {"previous": self.previous}

    def restore(self, state: State) -> None:
        self.previous = state["previous"]


class BrokenDetector(JumpDetector):
    def update(self, timestamp: float, value: float) -> float:
        return 2.0


def expected_jumps(file: CorpusFile, scale: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    jumps = np.concatenate(([0.0], np.abs(np.diff(file.values))))
    return np.minimum(1.0, jumps / scale)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", SYNTHETIC, [ODD, UNIT])


@pytest.fixture
def corpus(corpus_dir: Path) -> Corpus:
    return load_corpus(corpus_dir)


def test_fresh_detector_per_file_fed_in_row_order(corpus: Corpus) -> None:
    built: list[JumpDetector] = []

    def factory() -> Detector:
        built.append(JumpDetector(scale=0.2))
        return built[-1]

    run = runner.run_detector(corpus, factory)
    assert len(built) == len(corpus.files)
    for detector, file in zip(built, corpus.files, strict=True):
        assert detector.seen == list(zip(file.timestamps.tolist(), file.values.tolist(), strict=True))
        np.testing.assert_array_equal(run.scores[file.key], expected_jumps(file, 0.2))
    # Timestamps arrive as epoch seconds: the synthetic files start at 2020-01-01 00:00 UTC, 5 minutes apart.
    assert built[0].seen[0][0] == 1_577_836_800.0
    assert built[0].seen[1][0] - built[0].seen[0][0] == 300.0


def test_benchmark_scores_every_profile(corpus: Corpus) -> None:
    ticks: list[tuple[int, bool]] = []
    report = runner.benchmark(
        corpus, lambda: JumpDetector(scale=0.2), "jump", {"scale": 0.2}, lambda n, done: ticks.append((n, done))
    )
    assert sum(n for n, _ in ticks) == corpus.n_rows
    assert sum(done for _, done in ticks) == len(corpus.files)
    series = [f.with_scores(expected_jumps(f, 0.2)) for f in corpus.files]
    out = report.as_json()
    for name, profile in corpus.profiles.items():
        assert out[name] == sweep(series, profile).score
        assert out["thresholds"][name] == sweep(series, profile).threshold
    assert (out["files"], out["rows"], out["windows"]) == (4, 520, 3)
    assert out["points_per_s"] == pytest.approx(520 / out["elapsed_s"])


def test_contract_breach_names_the_file(corpus: Corpus) -> None:
    with pytest.raises(runner.DetectorContractError, match=r"alpha/one\.csv: row 0 scored 2\.0"):
        runner.run_detector(corpus, BrokenDetector)


def test_cli_saves_and_rescores(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def build_one(name: str, **params: Any) -> Detector:
        assert name == "jump"
        return JumpDetector(**params)

    monkeypatch.setattr(registry, "build_one", build_one)
    saved = tmp_path / "scores"
    args = ["--corpus", str(corpus_dir), "--detector", "jump", "--param", "scale=0.2", "--scores-dir", str(saved)]
    assert runner.main([*args, "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert live["detector"] == "jump"
    assert live["params"] == {"scale": 0.2}
    assert (saved / "alpha" / "one.csv").is_file()

    assert runner.main(["--corpus", str(corpus_dir), "--from-scores", str(saved), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for name in ("odd", "unit"):
        assert again[name] == live[name]
    assert again["elapsed_s"] is None

    # The same scores in NAB's results layout: results/<detector>/<category>/<detector>_<file>.csv
    nab_style = tmp_path / "results" / "jumpy"
    for key in SYNTHETIC:
        category, name = key.split("/")
        (nab_style / category).mkdir(parents=True, exist_ok=True)
        shutil.copy(saved / key, nab_style / category / f"jumpy_{name}")
    assert runner.main(["--corpus", str(corpus_dir), "--from-scores", str(nab_style)]) == 0
    table = capsys.readouterr().out
    assert "jumpy" in table
    assert f"{live['odd']:.3f}" in table


def test_cli_errors(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--corpus", str(corpus_dir), "--detector", "no-such-detector"]) == 2
    assert "unknown detector 'no-such-detector'" in capsys.readouterr().err
    (corpus_dir / "data" / "beta" / "flat.csv").unlink()
    assert runner.main(["--corpus", str(corpus_dir), "--from-scores", str(corpus_dir)]) == 2
    assert "labelled file(s) missing: beta/flat.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        runner.main(["--corpus", str(corpus_dir)])


def test_parse_params() -> None:
    assert runner.parse_params(["a=1", "b=0.5", "c=true", "d=text"]) == {"a": 1, "b": 0.5, "c": True, "d": "text"}


def test_from_scores_numenta(capsys: pytest.CaptureFixture[str]) -> None:
    if not NUMENTA.is_dir():
        pytest.skip(f"Numenta results not found at {NUMENTA}")
    assert runner.main(["--corpus", str(NAB_ROOT), "--from-scores", str(NUMENTA), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["standard"], 3) == 70.101
    assert round(out["reward_low_FN_rate"], 3) == 74.320
    assert round(out["reward_low_FP_rate"], 3) == 63.209
    assert (out["detector"], out["files"], out["rows"], out["windows"]) == ("numenta", 58, 365_558, 116)


def test_cli_leave_one_out_over_a_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"alpha/a.csv": (200, [(120, 129)]), "alpha/b.csv": (100, []), "beta/c.csv": (200, [(150, 159)])}
    corpus_dir = write_corpus(tmp_path / "corpus", files, [ODD, UNIT])
    argv = ["--corpus", str(corpus_dir), "--detector", "ewma", "--leave-one-out", "--grid", "alpha=0.01,0.1"]
    assert runner.main([*argv, "--param", "warmup=5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detector"] == "ewma"
    for profile in ("odd", "unit"):
        result = out[profile]
        assert [choice["category"] for choice in result["choices"]] == ["alpha", "beta"]
        for choice in result["choices"]:
            assert choice["params"]["warmup"] == 5
            assert choice["params"]["alpha"] in (0.01, 0.1)
        assert result["gap"] == pytest.approx(result["in_sample"] - result["held_out"])
    assert runner.main(argv) == 0
    assert "leave-one-category-out" in capsys.readouterr().out


def test_cli_leave_one_out_needs_windows_outside_each_category(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # beta's only window lies in probation: held out, alpha leaves nothing to choose on.
    argv = ["--corpus", str(corpus_dir), "--detector", "ewma", "--leave-one-out"]
    assert runner.main(argv) == 2
    assert "without category 'alpha'" in capsys.readouterr().err


def test_cli_grid_needs_leave_one_out(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        runner.main(["--corpus", str(corpus_dir), "--detector", "ewma", "--grid", "alpha=0.1"])
    assert "--grid gives the candidates" in capsys.readouterr().err


def test_report_rates_the_family_default_threshold(corpus: Corpus) -> None:
    report = runner.benchmark(corpus, lambda: registry.build_one("ewma"), "ewma", {})
    out = report.as_json()
    assert out["fixed_threshold"] == registry.get("ewma").default_threshold
    assert set(out["at_fixed_threshold"]) == {"odd", "unit"}


def test_batch_run_gives_the_one_point_scores(corpus: Corpus) -> None:
    batch = runner.run_batch(corpus, "ewma", {"warmup": 5})
    for file in corpus.files:
        one = registry.build_one("ewma", warmup=5)
        expected = [one.update(t, v) for t, v in zip(file.timestamps.tolist(), file.values.tolist(), strict=True)]
        assert batch[file.key].tolist() == expected
