"""The Kafka-driven engine's end-to-end throughput against the raw consume ceiling of the same topic, and its
latency from a sample's produce to the anomaly it causes being published.

    python -m benchmarks.kafka [--bootstrap 127.0.0.1:59192] [--series 1000] [--points 2000] [--per-message 100]
                               [--latency-series 500] [--latency-spikes 100] [--latency-rate 2500]
                               [--latency-seconds 10] [--json]

Needs a broker (``bash scripts/services/kafka.sh start``). One run has two phases, each on a fresh topic.

Throughput: ``series x points`` samples are produced to the topic in the columnar message shape (``--per-message``
points of one series per message, key = series key), then measured on that same topic: the raw ceiling (a bare
aiokafka consumer reading every record, no decoding), and the engine (``aiops serve``'s wiring: consume, decode,
validate, detect, incidents, publish anomalies, commit) from start until its last sample is detected and its offsets
committed (its start, joining the group and the first fetch, included: about 0.3 s, which is why the default run
is 2,000,000 samples long). It prints both samples/s and their ratio.

Beside them, the same messages are decoded by the engine's decoder and detected by its detection (as ``aiops
serve`` wires it), each timed on its own with nothing else around it, at the fastest of several batch sizes. From
those and the raw consume time it prints two ratio ceilings: the ratio of a process that did nothing but consume and
detect (``ratio_ceiling_consume_detect``), or consume, decode and detect (``..._consume_decode_detect``), one after
the other as one event loop runs them. They bound the ratio of any engine that runs these parts in one process on
the machine the run is on.

Latency: the same engine runs in a background task on a second topic. A producer first sends every one of
``--latency-series`` series the points the default detector needs before it scores (its warm-up, plus a margin),
waits until the engine has consumed them, then sends one point a message at a steady ``--latency-rate`` samples/s
(far below the engine's capacity, so the figure is latency, not queueing) for ``--latency-seconds``, with one clear
spike at a random moment in each of ``--latency-spikes`` of the series. For each anomaly record on the engine's
anomaly topic, the latency is its Kafka CreateTime (set by the engine's publisher when it hands the record to its
producer) minus the wall-clock time at which the point was sent, matched by (series, event timestamp). It prints
the produce rate achieved, how many anomalies were matched (and how many of the spikes were among them), and their
p50, p99 and maximum. The producer shares the engine's event loop, so its work counts against the engine's figure.
Every anomaly opens an incident, stored before its batch is acknowledged: many more spikes a second than the default
measure the incident store's write rate (detection waits for it) rather than the path to the anomaly topic.

Peers (``--peers``, with the ``bench`` extra: ``pip install 'aiops-engine[bench]'``): after the engine, what a team
might build instead runs on the same topic, one process each (``benchmarks.quix_peer``): Quix Streams consuming and
decoding only (``decode``), with a per-series EWMA z-score in a dict (``ewma``) or in Quix State, RocksDB with a
changelog topic (``ewma_state``), and river's Half-Space Trees per series (``hst``, on ``--hst-records`` records:
it is about a hundred times slower). It prints each peer's samples/s and the engine's ratio to each.

Targets: >= 250,000 samples/s per engine process with batched messages; the engine at least as fast as the stateful
EWMA peer (``ratio_to_ewma_state`` >= 1.0); report p99 time from produce to anomaly emitted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from detectors.seasonal_likelihood import SeasonalLikelihoodKernel
from engine.adapters.kafka.schema import SampleColumns, encode_samples, series_key_bytes
from engine.app.bootstrap import detection_service
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import Settings, load_settings
from engine.domain.batches import SampleBatch
from engine.domain.clock import SystemClock
from engine.domain.events import Anomaly, MetricSample, SeriesKey

REPO = Path(__file__).resolve().parents[1]

# The latency phase's series: a level with Gaussian noise, and spikes this many noise deviations high, far beyond
# anything the noise reaches, so that every spike is detected and nothing else is.
LEVEL, NOISE, SPIKE_DEVIATIONS = 100.0, 5.0, 40.0
# Event time of a series' first point and between two of its points.
EPOCH_S, STEP_S = 1_700_000_000.0, 60.0
# Points sent beyond the detector's warm-up before the measured stream, so that its spread estimate has settled.
WARMUP_MARGIN = 20
# How often the steady producer wakes up to send the messages that are due (a few a wake-up at the default rate).
PACE_S = 0.005
# Batch sizes (records) at which decoding and detection are timed on their own; each figure is the fastest of
# them (detection is slow on small batches, where numpy's per-call cost dominates, and on very large ones).
BOUND_BATCH_RECORDS = (300, 1_000, 3_000, 10_000)
# Longest wait for the engine to get through the warm-up (it joins its group first) or the measured stream.
ENGINE_WAIT_S = 60.0


async def produce(bootstrap: str, topic: str, series: int, points: int, per_message: int) -> list[tuple[bytes, bytes]]:
    """Send the throughput phase's messages and return them (key, value) in the order sent."""
    sent: list[tuple[bytes, bytes]] = []
    rng = np.random.default_rng(3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        keys = [SeriesKey.of("bench_latency_ms", {"pod": f"pod-{i}"}) for i in range(series)]
        key_bytes = [series_key_bytes(key) for key in keys]
        for lo in range(0, points, per_message):
            hi = min(lo + per_message, points)
            timestamps = 1_700_000_000.0 + 60.0 * np.arange(lo, hi)
            for key, raw_key in zip(keys, key_bytes, strict=True):
                values = 100.0 + rng.normal(0.0, 5.0, hi - lo)
                message = encode_samples(key, list(zip(timestamps.tolist(), values.tolist(), strict=True)))
                sent.append((raw_key, message))
                await producer.send(topic, message, key=raw_key)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


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


def decode_and_detect(messages: Sequence[tuple[bytes, bytes]], settings: Settings) -> tuple[float, float]:
    """The fewest seconds the engine's decoder and, separately, its detection (wired as ``aiops serve`` wires it)
    take over ``messages``, with nothing else around them, over batches of each of ``BOUND_BATCH_RECORDS``: the two
    largest parts of the engine's work, each on its own and at its most favourable batch size."""
    best_decode_s = best_detect_s = math.inf
    for size in BOUND_BATCH_RECORDS:
        batches: list[SampleBatch] = []
        started = time.perf_counter()
        for lo in range(0, len(messages), size):
            columns = SampleColumns()
            for key, value in messages[lo : lo + size]:
                columns.add(value, key)
            batches.append(columns.batch())
        best_decode_s = min(best_decode_s, time.perf_counter() - started)
        # A fresh service each time: every size starts from unlearned series, as the engine does.
        detection = detection_service(settings)
        started = time.perf_counter()
        for batch in batches:
            detection.process(batch)
        best_detect_s = min(best_detect_s, time.perf_counter() - started)
    return best_decode_s, best_detect_s


class DetectedAll:
    """Stops the source once every produced sample went through detection."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.stop: Callable[[], None] | None = None

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.seen += len(samples)
        if self.seen >= self.total and self.stop is not None:
            self.stop()

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: object) -> None:
        return

    def on_action(self, result: object) -> None:
        return


def engine_settings(bootstrap: str, topic: str, workdir: Path) -> Settings:
    return load_settings(
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


async def engine_consume(bootstrap: str, topic: str, total: int, workdir: Path) -> float:
    """Seconds from the engine's start (joining its group included) until its last offsets are committed."""
    settings = engine_settings(bootstrap, topic, workdir)
    done = DetectedAll(total)
    engine = await open_kafka_engine(settings, clock=SystemClock(), observers=[done])
    done.stop = engine.source.stop
    started = time.perf_counter()
    try:
        await engine.run()
    finally:
        await engine.close()
    return time.perf_counter() - started


def detector_warmup() -> int:
    """Points a series needs before the default detector scores it: the warm-up of its z-score part (its
    likelihood part warms up much later, but only ever raises a score, so a clear spike is detected without it)."""
    return SeasonalLikelihoodKernel().level.global_.warmup


class _Watch(DetectedAll):
    """Also counts the anomalies detected, so that all of them can be read back from the anomaly topic."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.anomalies = 0

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        self.anomalies += len(anomalies)


async def _until(reached: Callable[[], bool], engine: asyncio.Task[None], what: str) -> None:
    """Wait until ``reached()``, failing with the engine's own error if it stops first."""
    deadline = time.monotonic() + ENGINE_WAIT_S
    while not reached():
        if engine.done():
            engine.result()
            raise RuntimeError(f"the engine stopped before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the engine did not get through {what} within {ENGINE_WAIT_S:.0f} s")
        await asyncio.sleep(0.01)


async def produce_steady(
    producer: AIOKafkaProducer,
    topic: str,
    keys: Sequence[SeriesKey],
    first: int,
    values: np.ndarray[Any, np.dtype[np.float64]],
    rate: float,
) -> tuple[dict[tuple[str, float], float], float]:
    """Send ``values`` (points x series), one point a message, series by series in turn, at ``rate`` messages/s:
    message ``n`` goes out at ``n / rate`` seconds after the start, so the load is steady rather than bursty.
    Returns the wall-clock send time of each point by (series, event timestamp), and the rate achieved."""
    names = [str(key) for key in keys]
    key_bytes = [series_key_bytes(key) for key in keys]
    total = values.size
    sent: dict[tuple[str, float], float] = {}
    loop = asyncio.get_running_loop()
    started = loop.time()
    n = 0
    while n < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        while n < due:
            point, index = divmod(n, len(keys))
            timestamp = EPOCH_S + STEP_S * (first + point)
            message = encode_samples(keys[index], [(timestamp, float(values[point, index]))])
            sent[(names[index], timestamp)] = time.time()
            await producer.send(topic, message, key=key_bytes[index])
            n += 1
        await asyncio.sleep(PACE_S)
    elapsed = loop.time() - started
    await producer.flush()
    # The first message goes out at 0 s, the last at (total - 1) / rate.
    return sent, (total - 1) / elapsed if elapsed > 0 else float(total)


async def read_latencies(
    bootstrap: str, topic: str, count: int, sent: dict[tuple[str, float], float]
) -> dict[tuple[str, float], float]:
    """Read the first ``count`` anomaly records of ``topic``; for each one whose point was sent in the measured
    stream, its CreateTime (set by the engine's publisher) minus that point's send time, in seconds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    latencies: dict[tuple[str, float], float] = {}
    read = 0
    deadline = time.monotonic() + ENGINE_WAIT_S
    try:
        while read < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {read} of the {count} anomaly records within {ENGINE_WAIT_S:.0f} s")
            fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(timeout_ms=500)
            for records in fetched.values():
                for record in records:
                    read += 1
                    if record.timestamp_type != 0:
                        raise RuntimeError(f"{topic} stamps records with the broker's time, not CreateTime")
                    document = orjson.loads(record.value)
                    point = (document["series"], document["timestamp"])
                    at = sent.get(point)
                    if at is not None:
                        latencies[point] = record.timestamp / 1000.0 - at
    finally:
        await consumer.stop()
    return latencies


async def latency(
    bootstrap: str, topic: str, series: int, spikes: int, rate: float, seconds: float, workdir: Path
) -> dict[str, Any]:
    """The latency phase (see the module's docstring)."""
    if not 0 <= spikes <= series:
        raise ValueError(f"spikes must be between 0 and the number of series ({series}), got {spikes}")
    rng = np.random.default_rng(5)
    keys = [SeriesKey.of("bench_latency_ms", {"pod": f"pod-{i}"}) for i in range(series)]
    warm = detector_warmup() + WARMUP_MARGIN
    points = max(2, round(rate * seconds / series))
    values = LEVEL + rng.normal(0.0, NOISE, (points, series))
    # At most one spike a series (the default detector reports one detection per peak, and a second spike no higher
    # than the first would pass under the decaying peak), at a random point in the middle of its measured stream.
    edge = points // 10
    spiked = rng.choice(series, size=spikes, replace=False)
    at = rng.integers(edge, max(edge + 1, points - edge), size=spikes)
    values[at, spiked] += SPIKE_DEVIATIONS * NOISE
    spike_points = {
        (str(keys[index]), EPOCH_S + STEP_S * (warm + int(point))) for index, point in zip(spiked, at, strict=True)
    }
    # No linger: a point goes to the broker as soon as it is sent, as a latency-minded producer would.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        # The warm-up points, one message a series; this also creates the topic before the engine subscribes.
        timestamps = (EPOCH_S + STEP_S * np.arange(warm)).tolist()
        for key in keys:
            history = (LEVEL + rng.normal(0.0, NOISE, warm)).tolist()
            await producer.send(
                topic, encode_samples(key, list(zip(timestamps, history, strict=True))), key=series_key_bytes(key)
            )
        await producer.flush()
        watch = _Watch(series * (warm + points))
        engine = await open_kafka_engine(
            engine_settings(bootstrap, topic, workdir), clock=SystemClock(), observers=[watch]
        )
        watch.stop = engine.source.stop
        running = asyncio.create_task(engine.run(), name="bench-engine")
        try:
            # Measuring starts once the engine has joined its group and caught up with the warm-up.
            await _until(lambda: watch.seen >= series * warm, running, "the warm-up")
            sent, produce_rate = await produce_steady(producer, topic, keys, warm, values, rate)
            # The engine stops its source after the last sample and publishes what is still queued.
            await _until(running.done, running, "the measured stream")
            running.result()
        finally:
            if not running.done():
                running.cancel()
                with suppress(asyncio.CancelledError):
                    await running
            await engine.close()
    finally:
        await producer.stop()
    latencies = await read_latencies(bootstrap, f"{topic}.anomalies", watch.anomalies, sent) if watch.anomalies else {}
    figures = np.array(list(latencies.values())) * 1000.0
    p50, p99, worst = np.percentile(figures, [50, 99, 100]).tolist() if latencies else [None] * 3
    return {
        "latency_samples": len(sent),
        "latency_produce_per_s": round(produce_rate),
        "latency_spikes": spikes,
        "latency_spikes_detected": len(spike_points & latencies.keys()),
        "latency_anomalies": len(latencies),
        "latency_p50_ms": None if p50 is None else round(p50, 1),
        "latency_p99_ms": None if p99 is None else round(p99, 1),
        "latency_max_ms": None if worst is None else round(worst, 1),
    }


def peer(bootstrap: str, topic: str, records: int, pipeline: str) -> dict[str, Any]:
    """One ``benchmarks.quix_peer`` pipeline over the first ``records`` messages of ``topic``, in a process of its
    own; its figures, or why it did not run."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.quix_peer", "--bootstrap", bootstrap, "--topic", topic),
            *("--records", str(records), "--pipeline", pipeline),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["samples_per_s"] = round(figures["samples"] / figures["seconds"])
    return figures


def peers(args: argparse.Namespace, topic: str, records: int, engine_rate: float) -> dict[str, Any]:
    """The peers named by ``--peers`` on the throughput topic, each beside the engine's rate."""
    names = [name for name in args.peers.split(",") if name]
    if not names:
        return {}
    try:
        import quixstreams  # noqa: F401, PLC0415 (a benchmark-only extra)
    except ModuleNotFoundError:
        return {"peers": {"error": "quixstreams is not installed: pip install 'aiops-engine[bench]'"}}
    found: dict[str, Any] = {}
    for name in names:
        count = min(records, args.hst_records) if name == "hst" else records
        if count <= 0:
            continue
        figures = found[name] = peer(args.bootstrap, topic, count, name)
        if "samples_per_s" in figures:
            figures["engine_ratio"] = round(engine_rate / figures["samples_per_s"], 3)
    ratios = {
        f"ratio_to_{name}": figures["engine_ratio"] for name, figures in found.items() if "engine_ratio" in figures
    }
    return {"peers": found, **ratios}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    messages = await produce(args.bootstrap, topic, args.series, args.points, args.per_message)
    total, records = args.series * args.points, len(messages)
    raw_s = await raw_consume(args.bootstrap, topic, records)
    with tempfile.TemporaryDirectory() as workdir:
        decode_s, detect_s = decode_and_detect(messages, engine_settings(args.bootstrap, topic, Path(workdir)))
    with tempfile.TemporaryDirectory() as workdir:
        engine_s = await engine_consume(args.bootstrap, topic, total, Path(workdir))
    # A store of its own: nothing the first engine stored (incidents, checkpoints) carries over.
    with tempfile.TemporaryDirectory() as workdir:
        latency_figures = await latency(
            args.bootstrap,
            f"{topic}-latency",
            args.latency_series,
            args.latency_spikes,
            args.latency_rate,
            args.latency_seconds,
            Path(workdir),
        )
    raw_rate, engine_rate = total / raw_s, total / engine_s
    peer_figures = peers(args, topic, records, engine_rate)
    return {
        "samples": total,
        "records": records,
        "raw_consume_samples_per_s": round(raw_rate),
        "engine_samples_per_s": round(engine_rate),
        "ratio": round(engine_rate / raw_rate, 3),
        "decode_only_samples_per_s": round(total / decode_s),
        "detect_only_samples_per_s": round(total / detect_s),
        # The ratio of a process that did nothing but consume and detect (or consume, decode and detect), one
        # after the other as one event loop does: the most any engine of this design can reach on this machine.
        "ratio_ceiling_consume_detect": round(raw_s / (raw_s + detect_s), 3),
        "ratio_ceiling_consume_decode_detect": round(raw_s / (raw_s + decode_s + detect_s), 3),
        "raw_s": round(raw_s, 3),
        "engine_s": round(engine_s, 3),
        **latency_figures,
        **peer_figures,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:59192")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--latency-series", type=int, default=500)
    parser.add_argument("--latency-spikes", type=int, default=100, help="series given one spike each")
    parser.add_argument("--latency-rate", type=float, default=2500.0, help="samples/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--peers",
        default="decode,ewma,ewma_state,hst",
        help="Quix Streams pipelines to run beside the engine ('' for none)",
    )
    parser.add_argument("--hst-records", type=int, default=500, help="records the hst peer processes (0: skip it)")
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
