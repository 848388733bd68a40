"""The KPI corpus generator: NAB layout, windows by NAB's rule, seeded and stable files, and the NAB runner on it."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import kpi_corpus, nab
from detectors.nab.corpus import Corpus, load_corpus
from detectors.nab.scoring import probation_length

FILES_PER_KIND = 1


def written_files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def manifest_of(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / kpi_corpus.MANIFEST_FILE).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kpi") / "corpus"
    kpi_corpus.generate(root, seed=1, files_per_kind=FILES_PER_KIND)
    return root


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path) -> Corpus:
    return load_corpus(corpus_dir)


@pytest.fixture(scope="module")
def many_files() -> list[kpi_corpus.KpiFile]:
    """Enough files, in memory, to see every injection type."""
    return list(kpi_corpus.make_files(seed=3, files_per_kind=6))


def test_corpus_loads_in_the_nab_layout(corpus: Corpus) -> None:
    assert [file.key for file in corpus.files] == sorted(
        f"{kind}/{kind}_{i}.csv" for kind in kpi_corpus.KINDS for i in range(FILES_PER_KIND)
    )
    weights = {name: (p.tp_weight, p.fn_weight, p.fp_weight) for name, p in corpus.profiles.items()}
    assert weights == {
        "standard": (1.0, 1.0, 0.11),
        "reward_low_FP_rate": (1.0, 1.0, 0.22),
        "reward_low_FN_rate": (1.0, 2.0, 0.11),
    }
    for file in corpus.files:
        assert kpi_corpus.SHAPES["long"].rows[0] <= file.n_rows <= kpi_corpus.SHAPES["long"].rows[1]
        steps = np.diff(file.timestamps)
        assert np.all(steps == steps[0])
        assert steps[0] in kpi_corpus.SHAPES["long"].steps_s


def test_rows_and_labels_use_nab_text_formats(corpus_dir: Path) -> None:
    labels = json.loads((corpus_dir / kpi_corpus.LABELS_FILE).read_text(encoding="utf-8"))
    key, windows = next((key, windows) for key, windows in labels.items() if windows)
    lines = (corpus_dir / "data" / key).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "timestamp,value"
    stamps = {line.split(",")[0] for line in lines[1:]}
    for edge in (edge for window in windows for edge in window):
        assert edge.endswith(".000000")
        assert edge.removesuffix(".000000") in stamps
    assert all(len(stamp) == len("2024-01-01 00:00:00") for stamp in stamps)


def test_window_count_equals_the_manifest(corpus_dir: Path, corpus: Corpus) -> None:
    manifest = manifest_of(corpus_dir)
    assert sum(len(file.windows) for file in corpus.files) == len(manifest["injections"]) > 0
    for file in corpus.files:
        entries = [entry for entry in manifest["injections"] if entry["file"] == file.key]
        assert [(w.start, w.end) for w in file.windows] == [tuple(entry["window"]) for entry in entries]
        assert manifest["files"][file.key]["injections"] == len(entries)


def test_onsets_lie_after_probation_and_inside_their_windows(corpus_dir: Path) -> None:
    manifest = manifest_of(corpus_dir)
    for entry in manifest["injections"]:
        rows = manifest["files"][entry["file"]]["rows"]
        start, end = entry["window"]
        assert entry["onset"] >= min(math.floor(0.15 * rows), 750) == probation_length(rows)
        assert start <= entry["onset"] <= end
        assert entry["onset"] <= entry["end"] < rows


def test_windows_follow_the_nab_rule_and_do_not_overlap(corpus: Corpus, many_files: list[kpi_corpus.KpiFile]) -> None:
    for file in many_files:
        windows = file.windows
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert end < start
        for (start, end), inj in zip(windows, file.injections, strict=True):
            assert end - start + 1 == math.floor(0.1 * file.clock.n / len(windows))
            assert start >= probation_length(file.clock.n)
            assert abs((start + end) / 2 - inj.onset) <= 1
    assert any(len(file.windows) > 1 for file in corpus.files)


def test_some_files_have_no_injections(corpus: Corpus, many_files: list[kpi_corpus.KpiFile]) -> None:
    assert any(not file.windows for file in corpus.files)
    clean = [file for file in many_files if not file.injections]
    assert len(clean) == len(many_files) // kpi_corpus.CLEAN_EVERY
    assert {file.kind for file in clean} == set(kpi_corpus.KINDS)


def test_same_seed_writes_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first, again, other = tmp_path / "first", tmp_path / "again", tmp_path / "other"
    kpi_corpus.generate(first, seed=7, files_per_kind=1)
    kpi_corpus.generate(again, seed=7, files_per_kind=1)
    kpi_corpus.generate(other, seed=8, files_per_kind=1)
    assert written_files(first) == written_files(again)
    assert written_files(first).keys() == written_files(other).keys()
    data = [key for key in written_files(first) if key.startswith("data/")]
    assert all(written_files(first)[key] != written_files(other)[key] for key in data)


def test_a_file_does_not_change_when_files_are_added(tmp_path: Path) -> None:
    kpi_corpus.generate(tmp_path / "one", seed=5, files_per_kind=1)
    small = written_files(tmp_path / "one" / "data")
    kpi_corpus.generate(tmp_path / "two", seed=5, files_per_kind=2)
    large = written_files(tmp_path / "two" / "data")
    assert len(large) == 2 * len(small)
    assert all(large[key] == text for key, text in small.items())


def test_values_stay_in_each_kinds_range(many_files: list[kpi_corpus.KpiFile]) -> None:
    for file in many_files:
        values = file.values
        assert np.all(np.isfinite(values)), file.key
        if file.kind in ("throughput", "gpu_utilization"):
            assert np.all(values == np.rint(values)), file.key
        if file.kind == "error_ratio":
            assert np.all((values >= 0.0) & (values <= 1.0)), file.key
        elif file.kind == "gpu_utilization":
            assert np.all((values >= 0.0) & (values <= 100.0)), file.key
        elif file.kind == "gpu_memory":
            assert np.all((values >= 0.0) & (values <= file.params["capacity_gib"])), file.key
        elif file.kind == "latency":
            assert np.all(values > 0.0), file.key
        else:
            assert np.all(values >= 0.0), file.key


def test_every_injection_type_appears_and_suits_its_kind(many_files: list[kpi_corpus.KpiFile]) -> None:
    seen = {inj.type for file in many_files for inj in file.injections}
    assert seen == set(kpi_corpus.DRAWS)
    for file in many_files:
        assert len(file.injections) <= max(kpi_corpus.SHAPES["long"].injection_counts)
        for inj in file.injections:
            assert inj.type in kpi_corpus.MODELS[file.kind].types
            stretch = file.values[inj.onset : inj.end + 1]
            if inj.type == "flatline":
                assert np.all(stretch == file.values[inj.onset - 1])
            elif inj.type == "dropout":
                assert np.all(stretch == 0.0)


def test_nab_runner_scores_a_generated_corpus(
    corpus_dir: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nab.main(["--corpus", str(corpus_dir), "--detector", "ewma", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == len(corpus.files)
    assert report["rows"] == corpus.n_rows
    assert report["windows"] == len(manifest_of(corpus_dir)["injections"])
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert math.isfinite(report[profile])


def test_cli_writes_a_corpus_and_will_not_mix_it_with_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert kpi_corpus.main(["--out", str(out), "--seed", "2", "--files-per-kind", "1"]) == 0
    assert "6 files" in capsys.readouterr().out
    first = written_files(out)
    assert kpi_corpus.main(["--out", str(out), "--files-per-kind", "1"]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    # --force replaces an earlier run, even a larger one, and leaves no stale data file behind.
    assert kpi_corpus.main(["--out", str(out), "--seed", "2", "--files-per-kind", "2", "--force"]) == 0
    assert kpi_corpus.main(["--out", str(out), "--seed", "2", "--files-per-kind", "1", "--force"]) == 0
    assert written_files(out) == first
    load_corpus(out)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert kpi_corpus.main(["--out", str(out), "--files-per-kind", "1", "--force"]) == 2
    assert (out / "notes.txt").exists()


@pytest.mark.parametrize("shape", ["short", "dense"])
def test_other_shapes_lay_files_out_as_they_say(tmp_path: Path, shape: str) -> None:
    root = tmp_path / shape
    assert kpi_corpus.main(["--out", str(root), "--files-per-kind", "1", "--shape", shape, "--seed", "4"]) == 0
    layout = kpi_corpus.SHAPES[shape]
    corpus = load_corpus(root)
    manifest = json.loads((root / "injections.json").read_text())
    assert manifest["shape"] == shape
    for file in corpus.files:
        assert layout.rows[0] <= file.n_rows <= layout.rows[1]
        assert float(np.diff(file.timestamps[:2])[0]) in layout.steps_s
        if file.windows:
            assert min(layout.injection_counts) <= len(file.windows) <= max(layout.injection_counts)
