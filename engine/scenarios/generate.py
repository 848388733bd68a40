"""Generates the bundled scenario "serving stack in trouble" (deterministic; the shipped files are its output).

Two days of one-minute samples from a model-serving stack. The first day is healthy; on the second day four
labelled episodes happen: a latency spike on the fraud model, an error burst, GPU memory pressure and a
feature-drift episode. Three more series stay healthy throughout, so the replay also shows that the engine keeps
quiet when nothing is wrong.

    python -m engine.scenarios.generate [--out DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SCENARIO_NAME = "serving-stack-in-trouble"
DEFAULT_DIR = Path(__file__).with_name("serving_stack_in_trouble")
START = datetime(2026, 3, 2, tzinfo=UTC)
STEP_S = 60
POINTS = 2 * 24 * 60
SEED = 20260302


@dataclass(frozen=True)
class Episode:
    kind: str
    description: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class SeriesPlan:
    file: str
    name: str
    labels: dict[str, str]
    make: Callable[[np.random.Generator, FloatArray, FloatArray], FloatArray]
    episode: Episode | None = None


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour, minutes=minute)


def _daily(minutes: FloatArray, peak_hour: float = 15.0) -> FloatArray:
    """A smooth daily traffic shape in [-1, 1], highest at ``peak_hour``."""
    phase = 2 * np.pi * (minutes / 1440.0 - peak_hour / 24.0)
    return np.asarray(np.cos(phase), dtype=np.float64)


def _window(minutes: FloatArray, episode: Episode) -> FloatArray:
    """Position inside the episode in [0, 1], or NaN outside it."""
    start = (episode.start - START).total_seconds() / 60
    end = (episode.end - START).total_seconds() / 60
    pos = (minutes - start) / (end - start)
    return np.where((minutes >= start) & (minutes <= end), pos, np.nan)


LATENCY_SPIKE = Episode(
    "latency_spike",
    "p99 latency of the fraud model jumps five-fold after a slow feature-store dependency",
    _at(1, 9, 30),
    _at(1, 10, 10),
)
ERROR_BURST = Episode(
    "error_burst",
    "a bad model version returns errors for one request in ten",
    _at(1, 13, 20),
    _at(1, 13, 45),
)
GPU_MEMORY_PRESSURE = Episode(
    "gpu_memory_pressure",
    "GPU memory of the fraud model's node climbs towards exhaustion (a leak) until the pod is restarted",
    _at(1, 17, 0),
    _at(1, 18, 0),
)
FEATURE_DRIFT = Episode(
    "feature_drift",
    "the distribution of transaction_amount drifts (PSI against the training data rises far above 0.2)",
    _at(1, 21, 0),
    _at(1, 22, 30),
)


def _fraud_latency(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    base = 0.085 * (1 + 0.12 * _daily(minutes)) * rng.lognormal(0.0, 0.05, minutes.size)
    pos = _window(minutes, LATENCY_SPIKE)
    spike = np.where(np.isnan(pos), 1.0, 4.0 + 2.0 * np.sin(np.pi * np.nan_to_num(pos)))
    return np.asarray(base * spike, dtype=np.float64)


def _fraud_errors(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    base = np.clip(rng.normal(0.004, 0.0012, minutes.size), 0.0, None)
    pos = _window(minutes, ERROR_BURST)
    burst = np.where(np.isnan(pos), 0.0, rng.uniform(0.06, 0.12, minutes.size))
    return np.asarray(base + burst, dtype=np.float64)


def _gpu_memory(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    base = 0.60 + 0.02 * _daily(minutes) + rng.normal(0.0, 0.006, minutes.size)
    pos = _window(minutes, GPU_MEMORY_PRESSURE)
    leak = np.where(np.isnan(pos), 0.0, 0.37 * np.sqrt(np.nan_to_num(pos)))
    return np.asarray(np.clip(base + leak, 0.0, 1.0), dtype=np.float64)


def _feature_psi(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    base = rng.gamma(4.0, 0.0075, minutes.size)
    pos = _window(minutes, FEATURE_DRIFT)
    drift = np.where(np.isnan(pos), 0.0, 0.25 + 0.15 * np.nan_to_num(pos) + rng.normal(0, 0.03, minutes.size))
    return np.asarray(base + np.clip(drift, 0.0, None), dtype=np.float64)


def _fraud_rps(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    return np.asarray(120 + 80 * _daily(minutes) + rng.normal(0.0, 6.0, minutes.size), dtype=np.float64)


def _gpu_utilisation(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    shape = 0.45 + 0.3 * _daily(minutes) + rng.normal(0.0, 0.03, minutes.size)
    return np.asarray(np.clip(shape, 0.0, 1.0), dtype=np.float64)


def _recommender_latency(rng: np.random.Generator, minutes: FloatArray, _: FloatArray) -> FloatArray:
    return np.asarray(0.045 * rng.lognormal(0.0, 0.06, minutes.size), dtype=np.float64)


FRAUD = {"model": "fraud-detector", "namespace": "serving"}
GPU = {"gpu": "0", "node": "gpu-node-1", "namespace": "serving", "deployment": "fraud-detector"}

PLANS: tuple[SeriesPlan, ...] = (
    SeriesPlan("fraud_latency_p99.csv", "model_request_latency_p99_seconds", FRAUD, _fraud_latency, LATENCY_SPIKE),
    SeriesPlan("fraud_error_ratio.csv", "model_request_error_ratio", FRAUD, _fraud_errors, ERROR_BURST),
    SeriesPlan("gpu_memory_used.csv", "gpu_memory_used_ratio", GPU, _gpu_memory, GPU_MEMORY_PRESSURE),
    SeriesPlan(
        "fraud_feature_psi.csv",
        "model_feature_psi",
        FRAUD | {"feature": "transaction_amount"},
        _feature_psi,
        FEATURE_DRIFT,
    ),
    SeriesPlan("fraud_requests.csv", "model_requests_per_second", FRAUD, _fraud_rps),
    SeriesPlan("gpu_utilisation.csv", "gpu_utilization_ratio", GPU, _gpu_utilisation),
    SeriesPlan(
        "recommender_latency_p99.csv",
        "model_request_latency_p99_seconds",
        {"model": "recommender", "namespace": "serving"},
        _recommender_latency,
    ),
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels_yaml(labels: dict[str, str]) -> str:
    # Values are quoted so that YAML keeps them strings ("0" is a GPU index, not a number).
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in sorted(labels.items())) + "}"


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    minutes = np.arange(POINTS, dtype=np.float64) * STEP_S / 60
    stamps = [_iso(START + timedelta(minutes=float(m))) for m in minutes]
    lines = [
        f"name: {SCENARIO_NAME}",
        "description: >-",
        "  Two days of a model-serving stack: a healthy first day, then a latency spike, an error burst,",
        "  GPU memory pressure and feature drift on the fraud model. Generated by engine.scenarios.generate.",
        f"step_s: {STEP_S}",
        "series:",
    ]
    episodes: list[str] = []
    for plan in PLANS:
        values = plan.make(rng, minutes, minutes)
        body = "".join(f"{stamp},{value:.6f}\n" for stamp, value in zip(stamps, values, strict=True))
        (out / plan.file).write_text("timestamp,value\n" + body, encoding="utf-8")
        lines += [
            f"  - file: {plan.file}",
            f"    name: {plan.name}",
            f"    labels: {_labels_yaml(plan.labels)}",
        ]
        if plan.episode is not None:
            episodes += [
                f"  - kind: {plan.episode.kind}",
                f"    file: {plan.file}",
                f"    start: '{_iso(plan.episode.start)}'",
                f"    end: '{_iso(plan.episode.end)}'",
                f"    description: {plan.episode.description}",
            ]
    (out / "scenario.yaml").write_text("\n".join([*lines, "episodes:", *episodes]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="directory to write (default: the bundled one)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
