"""How fast the store keeps the Kafka engine's checkpoints, and so how many series one store can carry.

    python -m benchmarks.checkpoints [--series 100000] [--interval-s 60] [--partitions 12] [--checkpoints 60]
                                     [--stores sqlite,postgresql] [--json]

``aiops serve`` checkpoints each partition's position with the state of the series that changed since the last
checkpoint, in one transaction (``SqlStore.save_checkpoints``). With ``--series`` series sampled every
``--interval-s`` seconds and a checkpoint a second, each checkpoint upserts about ``series / interval`` rows:
16,700 at a million one-minute series. This benchmark writes that workload to each store as fast as the store
takes it:

1. every series' row is written once (the table as a long-running engine has it);
2. ``--checkpoints`` checkpoints, each ``series / interval`` series spread over ``--partitions`` partitions, one
   after the other, their series taken in turn so that every one is an update of an existing row.

It prints, per store, the rows/s and MB/s (the states' JSON) of step 2, each checkpoint's p50 and p99 seconds, and
whether the store keeps up (``keeps_up``: a checkpoint takes less than the second it stands for). The states are
the default detector's after 60 points (full size); the series' rows differ, their states repeat.

Stores: SQLite in a file of a temporary directory (as ``aiops serve`` uses it by default), and PostgreSQL in a
private cluster with fsync on (PostgreSQL's own default; ``benchmarks.services``), when PostgreSQL is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.services import private_postgres
from engine.adapters.store.sql_store import SqlStore
from engine.app.bootstrap import detection_service
from engine.app.settings import load_settings
from engine.core.checkpoints import PartitionCheckpoint, SeriesState
from engine.domain.events import MetricSample, SeriesKey

# Distinct detector states; the series share them in turn (what differs between series is their rows and keys).
DISTINCT_STATES = 1_000
WARM_POINTS = 60
TOPIC = "aiops.samples"


def detector_states(count: int) -> list[SeriesState]:
    """``count`` states of the default detector, each after ``WARM_POINTS`` points of a noisy level."""
    detection = detection_service(load_settings({}))
    series = [SeriesKey.of("bench_state", {"i": str(i)}) for i in range(count)]
    rng = np.random.default_rng(5)
    for step in range(WARM_POINTS):
        values = 100.0 + rng.normal(0.0, 5.0, count)
        detection.process(
            [MetricSample(key, 1_700_000_000.0 + 60.0 * step, float(v)) for key, v in zip(series, values, strict=True)]
        )
    captured = detection.capture(series)
    return [SeriesState(detection=captured[key]) for key in series]


def all_series(count: int) -> list[SeriesKey]:
    return [
        SeriesKey.of("model_latency_seconds", {"model": f"model-{i % 50}", "pod": f"serving-{i:07d}"})
        for i in range(count)
    ]


def checkpoint(
    series: Sequence[SeriesKey], states: Sequence[SeriesState], partitions: int, offset: int
) -> list[PartitionCheckpoint]:
    """One checkpoint of ``series``, spread over the partitions by their index (a series stays on its partition)."""
    by_partition: list[dict[SeriesKey, SeriesState]] = [{} for _ in range(partitions)]
    for index, key in enumerate(series):
        by_partition[hash(key) % partitions][key] = states[index % len(states)]
    return [PartitionCheckpoint(TOPIC, partition, offset, by_partition[partition]) for partition in range(partitions)]


def chunks(series: Sequence[SeriesKey], size: int) -> Iterator[Sequence[SeriesKey]]:
    for lo in range(0, len(series), size):
        yield series[lo : lo + size]


async def measure(url: str, args: argparse.Namespace, states: Sequence[SeriesState]) -> dict[str, Any]:
    series = all_series(args.series)
    per_checkpoint = max(1, round(args.series / args.interval_s))
    group = f"bench-{uuid.uuid4().hex[:8]}"
    state_bytes = statistics.mean(len(json.dumps(state.document(series[0]))) for state in states[:50])
    store = await SqlStore.open(url)
    try:
        offset = 0
        started = time.perf_counter()
        for part in chunks(series, per_checkpoint):
            offset += 1
            await store.save_checkpoints(group, checkpoint(part, states, args.partitions, offset))
        fill_s = time.perf_counter() - started
        seconds: list[float] = []
        cursor = 0
        for _ in range(args.checkpoints):
            part = [series[(cursor + i) % len(series)] for i in range(per_checkpoint)]
            cursor += per_checkpoint
            offset += 1
            taken = checkpoint(part, states, args.partitions, offset)
            started = time.perf_counter()
            await store.save_checkpoints(group, taken)
            seconds.append(time.perf_counter() - started)
    finally:
        await store.close()
    total = sum(seconds)
    rows = per_checkpoint * args.checkpoints
    p99 = float(np.quantile(seconds, 0.99))
    return {
        "rows_per_checkpoint": per_checkpoint,
        "fill_rows_per_s": round(args.series / fill_s),
        "rows_per_s": round(rows / total),
        "mb_per_s": round(rows * state_bytes / total / 1e6, 2),
        "state_bytes": round(state_bytes),
        "checkpoint_p50_s": round(float(np.median(seconds)), 4),
        "checkpoint_p99_s": round(p99, 4),
        "keeps_up": p99 < 1.0,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    states = detector_states(DISTINCT_STATES)
    result: dict[str, Any] = {
        "series": args.series,
        "interval_s": args.interval_s,
        "partitions": args.partitions,
        "checkpoints": args.checkpoints,
        "stores": {},
    }
    stores = [name for name in args.stores.split(",") if name]
    with ExitStack() as stack:
        for name in stores:
            if name == "sqlite":
                directory = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite+aiosqlite:///{Path(directory) / 'checkpoints.db'}"
            elif name == "postgresql":
                try:
                    url = stack.enter_context(private_postgres(durable=True)).url
                except LookupError as exc:
                    result["stores"][name] = {"error": str(exc)}
                    continue
            else:
                raise SystemExit(f"unknown store {name!r}: sqlite or postgresql")
            result["stores"][name] = await measure(url, args, states)
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--interval-s", type=float, default=60.0, help="seconds between two samples of a series")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--checkpoints", type=int, default=60, help="checkpoints measured (one a second in service)")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    for name, figures in result["stores"].items():
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key:>20}: {value}")


if __name__ == "__main__":
    cli()
