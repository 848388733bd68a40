"""Memory per active series, end to end: how many series one ``aiops serve`` process holds per GB of resident memory.

    python -m benchmarks.capacity [--series 100000,1000000] [--points 3] [--kafka-bootstrap HOST:PORT] [--json]

For each count in ``--series``: ``--points`` samples of every series are produced to a fresh topic (one message a
series, keyed by it, as the engine asks), then ``aiops serve`` (a process of its own: SQLite store, dry-run, the shipped
playbooks, the default detector, ``AIOPS_MAX_SERIES`` raised to the count) consumes them. Once its
``aiops_samples_total`` counts every sample and a few seconds have passed (its checkpoints written), its resident
set (``VmRSS``) is read. The baseline, measured in the same run, is the same command at rest on an empty topic
(``benchmarks.idle_memory``). Per series = (loaded - at rest) / series: detector state, slot index, series keys,
incident and checkpoint bookkeeping, and whatever the Kafka client and the store keep for them.

Target: at least 150,000 series per GB, so that one 8 GB pod holds a million series.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.idle_memory import serve_rss_mb
from benchmarks.serve_process import serve, wait_for_samples
from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.domain.events import SeriesKey

SETTLE_S = 5.0


async def produce(bootstrap: str, topic: str, series: int, points: int) -> int:
    """Every series' ``points`` samples, one message a series; how many samples."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        times = [1_700_000_000.0 + 60.0 * step for step in range(points)]
        for i in range(series):
            key = SeriesKey.of("model_latency_seconds", {"model": f"model-{i % 50}", "pod": f"serving-{i:07d}"})
            values = [0.1 + (i * 7 + step) % 13 / 100.0 for step in range(points)]
            message = encode_samples(key, list(zip(times, values, strict=True)))
            await producer.send(topic, message, key=series_key_bytes(key))
        await producer.flush()
    finally:
        await producer.stop()
    return series * points


def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"points_per_series": args.points, "runs": []}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        at_rest = serve_rss_mb(args.kafka_bootstrap, SETTLE_S, work)
        result["at_rest_rss_mb"] = round(at_rest, 1)
        for series in (int(count) for count in args.series.split(",") if count):
            topic = f"bench-capacity-{uuid.uuid4().hex[:8]}"
            samples = asyncio.run(produce(args.kafka_bootstrap, topic, series, args.points))
            with serve(args.kafka_bootstrap, topic, work, AIOPS_MAX_SERIES=str(series)) as process:
                seconds = wait_for_samples([process], samples)
                time.sleep(SETTLE_S)
                loaded = process.rss_mb()
            per_series = (loaded - at_rest) * 1024 * 1024 / series
            result["runs"].append(
                {
                    "series": series,
                    "samples": samples,
                    "seconds": round(seconds, 1),
                    "rss_mb": round(loaded, 1),
                    "bytes_per_series": round(per_series),
                    "series_per_gb": round(1e9 / per_series),
                }
            )
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="100000,1000000", help="series counts, comma-separated")
    parser.add_argument("--points", type=int, default=3, help="samples of each series")
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.kafka_bootstrap:
        parser.error("--kafka-bootstrap (or AIOPS_TEST_KAFKA_BOOTSTRAP) is required: a broker to produce to")
    result = main(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    print(f"at rest: {result['at_rest_rss_mb']} MB")
    for run in result["runs"]:
        print(
            f"{run['series']:>9} series: {run['rss_mb']} MB, {run['bytes_per_series']} B a series, "
            f"{run['series_per_gb']} series per GB ({run['seconds']} s to take {run['samples']} samples)"
        )


if __name__ == "__main__":
    cli()
