"""Generates the bundled scenario "serving stack in trouble" (deterministic; the shipped files are its output).

Two days of one-minute samples from a model-serving stack. The first day is healthy; on the second day five
labelled problems happen, each starting on its cause and moving related series after realistic lags: a traffic
surge (requests, then latency and GPU utilisation), a slow dependency of the recommender (latency, then errors), a
bad rollout (the registry alias, then errors and latency), a GPU memory leak (memory, then latency, then
utilisation) and feature drift (PSI, then errors). Other series stay healthy throughout, so the replay also shows
that the engine keeps quiet when nothing is wrong, and that each problem is one incident with the right cause.

    python -m engine.scenarios.generate [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import zlib
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
class Problem:
    """One labelled problem: it starts on its cause series and moves the others after their own lags."""

    kind: str
    description: str
    start: datetime
    end: datetime
    cause: str
    # The other series it moves (their files), each with the minutes it lags behind the cause.
    moves: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class SeriesPlan:
    file: str
    name: str
    labels: dict[str, str]
    make: Callable[[np.random.Generator, FloatArray], FloatArray]


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour, minutes=minute)


def _daily(minutes: FloatArray, peak_hour: float = 15.0) -> FloatArray:
    """A smooth daily traffic shape in [-1, 1], highest at ``peak_hour``."""
    phase = 2 * np.pi * (minutes / 1440.0 - peak_hour / 24.0)
    return np.asarray(np.cos(phase), dtype=np.float64)


TRAFFIC_SURGE = Problem(
    "traffic_surge",
    "a marketing campaign sends the fraud model 2.5 times its traffic: latency climbs a few minutes later and the "
    "GPU runs hotter",
    _at(1, 9, 30),
    _at(1, 10, 10),
    "fraud_requests.csv",
    (("fraud_latency_p99.csv", 3.0), ("gpu_utilisation.csv", 2.0)),
)
RECOMMENDER_DEPENDENCY = Problem(
    "slow_dependency",
    "the recommender's feature store slows down: its p99 latency quadruples, then requests time out as errors",
    _at(1, 11, 0),
    _at(1, 11, 40),
    "recommender_latency_p99.csv",
    (("recommender_error_ratio.csv", 4.0),),
)
BAD_ROLLOUT = Problem(
    "bad_rollout",
    "the champion alias of the fraud model moves to a bad version: one request in ten fails from two minutes "
    "later and latency rises, until the alias is moved back",
    _at(1, 13, 20),
    _at(1, 13, 50),
    "fraud_alias_version.csv",
    (("fraud_error_ratio.csv", 2.0), ("fraud_latency_p99.csv", 3.0)),
)
GPU_MEMORY_LEAK = Problem(
    "gpu_memory_leak",
    "GPU memory of the fraud model's node climbs towards exhaustion (a leak): latency follows as the allocator "
    "struggles, then utilisation collapses, until the pod is restarted",
    _at(1, 17, 0),
    _at(1, 18, 0),
    "gpu_memory_used.csv",
    (("fraud_latency_p99.csv", 12.0), ("gpu_utilisation.csv", 25.0)),
)
FEATURE_DRIFT = Problem(
    "feature_drift",
    "the distribution of transaction_amount drifts (PSI against the training data rises far above 0.2), and the "
    "model's errors creep up",
    _at(1, 21, 0),
    _at(1, 22, 30),
    "fraud_feature_psi.csv",
    (("fraud_error_ratio.csv", 15.0),),
)
PROBLEMS = (TRAFFIC_SURGE, RECOMMENDER_DEPENDENCY, BAD_ROLLOUT, GPU_MEMORY_LEAK, FEATURE_DRIFT)


def _effect(minutes: FloatArray, file: str) -> list[tuple[Problem, FloatArray]]:
    """For each problem that moves ``file``: its position in [0, 1] from the series' own onset (the problem's
    start plus the series' lag) to the problem's end, NaN outside."""
    found = []
    for problem in PROBLEMS:
        lags = {problem.cause: 0.0, **dict(problem.moves)}
        if file not in lags:
            continue
        start = (problem.start - START).total_seconds() / 60 + lags[file]
        end = (problem.end - START).total_seconds() / 60
        pos = (minutes - start) / (end - start)
        found.append((problem, np.where((minutes >= start) & (minutes <= end), pos, np.nan)))
    return found


def _inside(pos: FloatArray) -> npt.NDArray[np.bool_]:
    return np.asarray(~np.isnan(pos))


def _fraud_requests(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    values = 120 + 80 * _daily(minutes) + rng.normal(0.0, 6.0, minutes.size)
    for _, pos in _effect(minutes, "fraud_requests.csv"):
        # A fast ramp to 2.5 times the usual traffic.
        values = np.where(_inside(pos), values * (1 + 1.5 * np.minimum(1.0, np.nan_to_num(pos) * 8)), values)
    return np.asarray(values, dtype=np.float64)


def _fraud_latency(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    base = 0.085 * (1 + 0.12 * _daily(minutes)) * rng.lognormal(0.0, 0.05, minutes.size)
    factor = np.ones(minutes.size)
    for problem, pos in _effect(minutes, "fraud_latency_p99.csv"):
        inside, at = _inside(pos), np.nan_to_num(pos)
        if problem is TRAFFIC_SURGE:
            factor = np.where(inside, 3.0 + 1.0 * np.sin(np.pi * at), factor)
        elif problem is BAD_ROLLOUT:
            factor = np.where(inside, 1.8, factor)
        else:  # the GPU memory leak: latency grows as memory runs out
            factor = np.where(inside, 1.6 + 2.4 * at, factor)
    return np.asarray(base * factor, dtype=np.float64)


def _fraud_errors(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    values = np.clip(rng.normal(0.004, 0.0012, minutes.size), 0.0, None)
    for problem, pos in _effect(minutes, "fraud_error_ratio.csv"):
        if problem is BAD_ROLLOUT:
            extra = rng.uniform(0.06, 0.12, minutes.size)
        else:  # drift: errors creep up as the model sees inputs unlike its training data
            extra = 0.03 + 0.03 * np.nan_to_num(pos) + rng.normal(0.0, 0.004, minutes.size)
        values = np.where(_inside(pos), values + np.clip(extra, 0.0, None), values)
    return np.asarray(values, dtype=np.float64)


def _fraud_alias_version(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    # The registry's champion version of the fraud model: 7, moved to 8 by the bad rollout, then back.
    values = np.full(minutes.size, 7.0)
    for _, pos in _effect(minutes, "fraud_alias_version.csv"):
        values = np.where(_inside(pos), 8.0, values)
    return values


def _gpu_memory(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    base = 0.60 + 0.02 * _daily(minutes) + rng.normal(0.0, 0.006, minutes.size)
    for _, pos in _effect(minutes, "gpu_memory_used.csv"):
        base = np.where(_inside(pos), base + 0.37 * np.sqrt(np.nan_to_num(pos)), base)
    return np.asarray(np.clip(base, 0.0, 1.0), dtype=np.float64)


def _gpu_utilisation(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    shape = 0.45 + 0.3 * _daily(minutes) + rng.normal(0.0, 0.03, minutes.size)
    for problem, pos in _effect(minutes, "gpu_utilisation.csv"):
        if problem is TRAFFIC_SURGE:
            shape = np.where(_inside(pos), np.minimum(0.98, shape + 0.4), shape)
        else:  # the leak: kernels stall on allocation and utilisation collapses
            shape = np.where(_inside(pos), 0.12 + rng.normal(0.0, 0.02, minutes.size), shape)
    return np.asarray(np.clip(shape, 0.0, 1.0), dtype=np.float64)


def _feature_psi(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    # PSI is computed over a sliding window of requests, so consecutive values move together: a slowly wandering
    # level around 0.03, not independent noise.
    wander = np.convolve(rng.normal(0.0, 0.004, minutes.size + 29), np.ones(30) / np.sqrt(30), mode="valid")
    values = np.clip(0.03 + wander, 0.005, None)
    for _, pos in _effect(minutes, "fraud_feature_psi.csv"):
        drift = 0.25 + 0.15 * np.nan_to_num(pos) + rng.normal(0, 0.03, minutes.size)
        values = np.where(_inside(pos), values + np.clip(drift, 0.0, None), values)
    return np.asarray(values, dtype=np.float64)


def _recommender_latency(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    values = 0.045 * rng.lognormal(0.0, 0.06, minutes.size)
    for _, pos in _effect(minutes, "recommender_latency_p99.csv"):
        values = np.where(_inside(pos), values * 4.0, values)
    return np.asarray(values, dtype=np.float64)


def _recommender_errors(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    values = np.clip(rng.normal(0.002, 0.0006, minutes.size), 0.0, None)
    for _, pos in _effect(minutes, "recommender_error_ratio.csv"):
        values = np.where(_inside(pos), values + rng.uniform(0.04, 0.07, minutes.size), values)
    return np.asarray(values, dtype=np.float64)


def _recommender_requests(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    return np.asarray(300 + 150 * _daily(minutes, 19.0) + rng.normal(0.0, 12.0, minutes.size), dtype=np.float64)


def _node_cpu(rng: np.random.Generator, minutes: FloatArray) -> FloatArray:
    shape = 0.35 + 0.15 * _daily(minutes) + rng.normal(0.0, 0.02, minutes.size)
    return np.asarray(np.clip(shape, 0.0, 1.0), dtype=np.float64)


FRAUD = {"model": "fraud-detector", "namespace": "serving"}
RECOMMENDER = {"model": "recommender", "namespace": "serving"}
GPU = {"gpu": "0", "node": "gpu-node-1", "namespace": "serving", "deployment": "fraud-detector"}

PLANS: tuple[SeriesPlan, ...] = (
    SeriesPlan("fraud_latency_p99.csv", "model_request_latency_p99_seconds", FRAUD, _fraud_latency),
    SeriesPlan("fraud_error_ratio.csv", "model_request_error_ratio", FRAUD, _fraud_errors),
    SeriesPlan("fraud_requests.csv", "model_requests_per_second", FRAUD, _fraud_requests),
    SeriesPlan(
        "fraud_alias_version.csv",
        "mlflow_model_alias_version",
        FRAUD | {"alias": "champion"},
        _fraud_alias_version,
    ),
    SeriesPlan(
        "fraud_feature_psi.csv",
        "model_feature_psi",
        FRAUD | {"feature": "transaction_amount"},
        _feature_psi,
    ),
    SeriesPlan("gpu_memory_used.csv", "gpu_memory_used_ratio", GPU, _gpu_memory),
    SeriesPlan("gpu_utilisation.csv", "gpu_utilization_ratio", GPU, _gpu_utilisation),
    SeriesPlan("recommender_latency_p99.csv", "model_request_latency_p99_seconds", RECOMMENDER, _recommender_latency),
    SeriesPlan("recommender_error_ratio.csv", "model_request_error_ratio", RECOMMENDER, _recommender_errors),
    SeriesPlan("recommender_requests.csv", "model_requests_per_second", RECOMMENDER, _recommender_requests),
    SeriesPlan("node_cpu_utilisation.csv", "node_cpu_utilisation_ratio", {"node": "gpu-node-1"}, _node_cpu),
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels_yaml(labels: dict[str, str]) -> str:
    # Values are quoted so that YAML keeps them strings ("0" is a GPU index, not a number).
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in sorted(labels.items())) + "}"


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    minutes = np.arange(POINTS, dtype=np.float64) * STEP_S / 60
    stamps = [_iso(START + timedelta(minutes=float(m))) for m in minutes]
    lines = [
        f"name: {SCENARIO_NAME}",
        "description: >-",
        "  Two days of a model-serving stack: a healthy first day, then five problems, each moving its related",
        "  series one after another (traffic surge, slow dependency, bad rollout, GPU memory leak, feature drift),",
        "  while other series stay healthy. Generated by engine.scenarios.generate.",
        f"step_s: {STEP_S}",
        "series:",
    ]
    for stale in out.glob("*.csv"):
        stale.unlink()
    for plan in PLANS:
        # A generator of its own per series, so that adding or reordering series leaves the others' noise alone.
        values = plan.make(np.random.default_rng([SEED, zlib.crc32(plan.file.encode())]), minutes)
        body = "".join(f"{stamp},{value:.6f}\n" for stamp, value in zip(stamps, values, strict=True))
        (out / plan.file).write_text("timestamp,value\n" + body, encoding="utf-8")
        lines += [
            f"  - file: {plan.file}",
            f"    name: {plan.name}",
            f"    labels: {_labels_yaml(plan.labels)}",
        ]
    lines.append("episodes:")
    for problem in PROBLEMS:
        lines += [
            f"  - kind: {problem.kind}",
            f"    file: {problem.cause}",
            f"    moves: [{', '.join(file for file, _ in problem.moves)}]",
            f"    start: '{_iso(problem.start)}'",
            f"    end: '{_iso(problem.end)}'",
            # Double-quoted (JSON is valid YAML there): descriptions hold colons.
            f"    description: {json.dumps(problem.description)}",
        ]
    (out / "scenario.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="directory to write (default: the bundled one)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
