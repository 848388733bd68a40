"""The Kafka-driven engine's end-to-end throughput against the raw consume ceiling of the same topic.

    python -m benchmarks.kafka [--bootstrap 127.0.0.1:59192] [--series 1000] [--points 500] [--per-message 100]
                               [--json]

Needs a broker (``bash scripts/services/kafka.sh start``). One run produces ``series x points`` samples to a fresh
topic in the columnar message shape (``--per-message`` points of one series per message, key = series key), then
measures, on that same topic: the raw ceiling (a bare aiokafka consumer reading every record, no decoding), and the
engine (``aiops serve``'s wiring: consume, decode, validate, detect, incidents, publish anomalies, commit) from start
until its last sample is detected and its offsets committed. It prints both samples/s and their ratio.
Target (issue 4): >= 250,000 samples/s per engine process with batched messages, and >= 0.7 of the ceiling.
Not measured yet: p99 time from produce to anomaly emitted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import load_settings
from engine.domain.clock import SystemClock
from engine.domain.events import Anomaly, MetricSample, SeriesKey

REPO = Path(__file__).resolve().parents[1]


async def produce(bootstrap: str, topic: str, series: int, points: int, per_message: int) -> int:
    rng = np.random.default_rng(3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        keys = [SeriesKey.of("bench_latency_ms", {"pod": f"pod-{i}"}) for i in range(series)]
        for lo in range(0, points, per_message):
            hi = min(lo + per_message, points)
            timestamps = 1_700_000_000.0 + 60.0 * np.arange(lo, hi)
            for key in keys:
                values = 100.0 + rng.normal(0.0, 5.0, hi - lo)
                message = encode_samples(key, list(zip(timestamps.tolist(), values.tolist(), strict=True)))
                await producer.send(topic, message, key=series_key_bytes(key))
        await producer.flush()
    finally:
        await producer.stop()
    return series * points


async def raw_consume(bootstrap: str, topic: str, records: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", max_poll_records=10_000
    )
    started = time.perf_counter()
    await consumer.start()
    try:
        seen = 0
        while seen < records:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen += len(batch)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


class _Done:
    """Stops the source once every produced sample went through detection."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.stop: Callable[[], None] | None = None

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.seen += len(samples)
        if self.seen >= self.total and self.stop is not None:
            self.stop()

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: object) -> None:
        return

    def on_action(self, result: object) -> None:
        return


async def engine_consume(bootstrap: str, topic: str, total: int, workdir: Path) -> float:
    settings = load_settings(
        {},
        kafka_bootstrap=bootstrap,
        kafka_topics=topic,
        kafka_group_id=f"bench-{topic}",
        kafka_anomaly_topic=f"{topic}.anomalies",
        kafka_incident_topic=f"{topic}.incidents",
        kafka_action_topic=f"{topic}.actions",
        kafka_dead_letter_topic=f"{topic}.dlq",
        database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        playbook_dir=REPO / "playbooks",
    )
    done = _Done(total)
    engine = await open_kafka_engine(settings, clock=SystemClock(), observers=[done])
    done.stop = engine.source.stop
    started = time.perf_counter()
    try:
        await engine.run()
    finally:
        await engine.close()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    total = await produce(args.bootstrap, topic, args.series, args.points, args.per_message)
    records = args.series * -(-args.points // args.per_message)
    raw_s = await raw_consume(args.bootstrap, topic, records)
    with tempfile.TemporaryDirectory() as workdir:
        engine_s = await engine_consume(args.bootstrap, topic, total, Path(workdir))
    raw_rate, engine_rate = total / raw_s, total / engine_s
    return {
        "samples": total,
        "records": records,
        "raw_consume_samples_per_s": round(raw_rate),
        "engine_samples_per_s": round(engine_rate),
        "ratio": round(engine_rate / raw_rate, 3),
        "raw_s": round(raw_s, 3),
        "engine_s": round(engine_s, 3),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:59192")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for name, value in result.items():
            print(f"{name:>28}: {value}")


if __name__ == "__main__":
    cli()
