"""Decode rates of each Kafka message format beside the engine's own JSON, and their end-to-end rates through
``aiops serve``.

    python -m benchmarks.formats [--points 400000] [--repeat 5] [--kafka-bootstrap HOST:PORT] [--json]

The same kind of data in every format: series of a service fleet (``--resources`` resources with service, host, pod
and namespace attributes; ``--metrics`` metrics each, half gauges and half monotonic counters; ``--series`` attribute
sets of route, method and status per metric; ``--points`` points in all), shaped as each producer sends it:

- ``json``: the engine's own columnar messages, 100 points of one series a message (``benchmarks.kafka``'s shape);
- ``otlp_proto`` and ``otlp_json``: one ``ExportMetricsServiceRequest`` a message, as a collector exports it (every
  resource, every metric, ``--points-per-series`` points of each series: 2,400 data points, 200 KB in protobuf).
  Every request holds the same series with later times and values, as a periodic export does: after the first, each
  repeats the first one's layout and is read without a walk (``engine.adapters.otlp.layouts``).
  ``otlp_proto_new_layouts`` decodes the same requests, each with its scope's version set to its number, so that none
  repeats an earlier layout: the rate of requests whose set of series changes every time (decode only);
- ``prometheus_adapter_json``: one sample a message;
- ``influx_line``: 1,000 lines a message, five fields a line (Telegraf's shape).

Decode: every message decoded by the topic's decoder (``formats.message_decoder``) and its runs gathered into the
engine's batches (``SampleColumns``, 10,000 messages a batch as ``aiops serve`` fetches them), the fastest of
``--repeat`` runs with a fresh decoder each. ``points_per_s`` counts the data points the messages carry,
``samples_per_s`` the samples they became (a counter's first point gives no rate, so OTLP yields fewer samples than
points).

End to end (with ``--kafka-bootstrap``, default ``AIOPS_TEST_KAFKA_BOOTSTRAP``): the messages are produced to a fresh
topic and ``aiops serve``'s wiring (``open_kafka_engine`` with ``AIOPS_KAFKA_TOPIC_FORMATS``) consumes, decodes,
detects, stores incidents and commits them; seconds from its start (joining its group included) until it has
detected every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from benchmarks.kafka import DetectedAll
from engine.adapters.kafka.formats import FORMATS, message_decoder
from engine.adapters.kafka.schema import MessageLimits, SampleColumns, encode_samples, series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import load_settings
from engine.domain.clock import SystemClock
from engine.domain.events import SeriesKey

REPO = Path(__file__).resolve().parents[1]
Messages = list[tuple[bytes | None, bytes]]
EPOCH_NS = 1_700_000_000 * 1_000_000_000
STEP_NS = 10 * 1_000_000_000
JSON_POINTS_PER_MESSAGE = 100
INFLUX_LINES_PER_MESSAGE = 1_000
INFLUX_FIELDS_PER_LINE = 5
# Records a batch, as ``aiops serve`` fetches them (AIOPS_KAFKA_MAX_BATCH).
BATCH_RECORDS = 10_000
# The otlp_proto messages again, each laid out anew (no request repeats an earlier one's layout).
NEW_LAYOUTS = "otlp_proto_new_layouts"
# Most messages one format sends in the end-to-end phase: one sample a message is slow to produce.
MAX_E2E_MESSAGES = 200_000


class Fleet:
    """The series of the run and the value of each at each step."""

    def __init__(self, resources: int, metrics: int, series: int, points: int, points_per_series: int) -> None:
        self.resources = [
            {
                "service.name": f"svc-{r % 3}",
                "host.name": f"host-{r}",
                "k8s.pod.name": f"svc-{r % 3}-7d9f8c6b5-{r:05d}",
                "k8s.namespace.name": "serving",
            }
            for r in range(resources)
        ]
        self.metrics = [f"app.metric_{m}" for m in range(metrics)]
        self.attributes = [{"http.route": f"/api/v1/{s}", "http.method": "GET", "status": "200"} for s in range(series)]
        self.points_per_series = points_per_series
        per_round = resources * metrics * series * points_per_series
        self.rounds = max(1, points // per_round)
        self.points = self.rounds * per_round

    def counter(self, metric: int) -> bool:
        return metric % 2 == 0

    def value(self, metric: int, step: int) -> float:
        # Counters grow; gauges wander around a level.
        return float(step * (metric + 1)) if self.counter(metric) else 100.0 + (step * 7 + metric) % 13

    def steps(self, round_: int) -> range:
        return range(round_ * self.points_per_series, (round_ + 1) * self.points_per_series)


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_requests(fleet: Fleet, *, new_layouts: bool = False) -> list[ExportMetricsServiceRequest]:
    """The fleet's requests; with ``new_layouts`` each names its scope's version (the request's number), so that no
    request repeats the bytes of an earlier one outside its times and values (the decoder's layout cache misses)."""
    requests = []
    for round_ in range(fleet.rounds):
        request = ExportMetricsServiceRequest()
        for resource in fleet.resources:
            resource_metrics = request.resource_metrics.add()
            resource_metrics.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
            scope = resource_metrics.scope_metrics.add()
            scope.scope.name = "benchmarks.formats"
            if new_layouts:
                scope.scope.version = f"{round_}"
            for index, name in enumerate(fleet.metrics):
                metric = scope.metrics.add(name=name)
                if fleet.counter(index):
                    metric.sum.aggregation_temporality = 2
                    metric.sum.is_monotonic = True
                    points = metric.sum.data_points
                else:
                    points = metric.gauge.data_points
                for attributes in fleet.attributes:
                    for step in fleet.steps(round_):
                        point = points.add(
                            start_time_unix_nano=EPOCH_NS,
                            time_unix_nano=EPOCH_NS + (step + 1) * STEP_NS,
                            as_double=fleet.value(index, step),
                        )
                        point.attributes.extend(_kv(k, v) for k, v in attributes.items())
        requests.append(request)
    return requests


def _series_points(fleet: Fleet) -> list[tuple[SeriesKey, list[tuple[float, float]]]]:
    """Every series (labels as the OTLP flattening names them) with all its points."""
    total = fleet.rounds * fleet.points_per_series
    out = []
    for resource in fleet.resources:
        for index, name in enumerate(fleet.metrics):
            for attributes in fleet.attributes:
                labels = {k.replace(".", "_"): v for k, v in {**resource, **attributes}.items()}
                key = SeriesKey.of(name.replace(".", "_"), labels)
                points = [((EPOCH_NS + (s + 1) * STEP_NS) / 1e9, fleet.value(index, s)) for s in range(total)]
                out.append((key, points))
    return out


def json_messages(fleet: Fleet) -> Messages:
    messages: Messages = []
    for key, points in _series_points(fleet):
        for lo in range(0, len(points), JSON_POINTS_PER_MESSAGE):
            messages.append((series_key_bytes(key), encode_samples(key, points[lo : lo + JSON_POINTS_PER_MESSAGE])))
    return messages


def adapter_messages(fleet: Fleet) -> Messages:
    messages: Messages = []
    for key, points in _series_points(fleet):
        labels = {"__name__": key.name, **key.label_map}
        for timestamp, value in points:
            stamp = np.datetime_as_string(np.datetime64(int(timestamp * 1000), "ms"), unit="ms") + "Z"
            document = {"timestamp": stamp, "value": repr(value), "name": key.name, "labels": labels}
            messages.append((key.name.encode(), orjson.dumps(document)))
    return messages


def influx_messages(fleet: Fleet) -> Messages:
    lines = []
    for key, points in _series_points(fleet)[::INFLUX_FIELDS_PER_LINE]:
        tags = ",".join(f"{k}={v}" for k, v in key.labels)
        for timestamp, value in points:
            fields = ",".join(f"f{n}={value + n!r}" for n in range(INFLUX_FIELDS_PER_LINE))
            lines.append(f"{key.name},{tags} {fields} {round(timestamp * 1e9)}")
    return [
        (b"fleet", "\n".join(lines[lo : lo + INFLUX_LINES_PER_MESSAGE]).encode())
        for lo in range(0, len(lines), INFLUX_LINES_PER_MESSAGE)
    ]


def messages_of(fleet: Fleet) -> dict[str, Messages]:
    requests = otlp_requests(fleet)
    return {
        "json": json_messages(fleet),
        "otlp_proto": [(b"fleet", request.SerializeToString()) for request in requests],
        NEW_LAYOUTS: [(b"fleet", request.SerializeToString()) for request in otlp_requests(fleet, new_layouts=True)],
        "otlp_json": [(b"fleet", json_format.MessageToJson(request, indent=None).encode()) for request in requests],
        "prometheus_adapter_json": adapter_messages(fleet),
        "influx_line": influx_messages(fleet),
    }


def decode_all(format_name: str, messages: Sequence[tuple[bytes | None, bytes]]) -> tuple[float, int]:
    """Seconds to decode ``messages`` into the engine's batches with a fresh decoder, and the samples they held."""
    limits = MessageLimits()
    decode = message_decoder("otlp_proto" if format_name == NEW_LAYOUTS else format_name, limits)
    samples = 0
    started = time.perf_counter()
    for lo in range(0, len(messages), BATCH_RECORDS):
        columns = SampleColumns()
        for key, value in messages[lo : lo + BATCH_RECORDS]:
            for series, points in decode(value, key if format_name == "json" else None, limits):
                columns.append(series, points)
        samples += len(columns.batch())
    return time.perf_counter() - started, samples


async def end_to_end(bootstrap: str, format_name: str, messages: Messages, samples: int, workdir: Path) -> float:
    """Seconds ``aiops serve``'s wiring takes from its start to having detected all ``samples`` of ``messages``."""
    topic = f"bench-formats-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    settings = load_settings(
        {},
        kafka_bootstrap=bootstrap,
        kafka_topics=topic,
        kafka_topic_formats=f"{topic}={format_name}",
        kafka_group_id=f"bench-{topic}",
        kafka_anomaly_topic=f"{topic}.anomalies",
        kafka_incident_topic=f"{topic}.incidents",
        kafka_action_topic=f"{topic}.actions",
        kafka_dead_letter_topic=f"{topic}.dlq",
        database_url=f"sqlite+aiosqlite:///{workdir / f'{topic}.db'}",
        playbook_dir=REPO / "playbooks",
    )
    done = DetectedAll(samples)
    engine = await open_kafka_engine(settings, clock=SystemClock(), observers=[done])
    done.stop = engine.source.stop
    started = time.perf_counter()
    try:
        await engine.run()
    finally:
        await engine.close()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(args.resources, args.metrics, args.series, args.points, args.points_per_series)
    all_messages = messages_of(fleet)
    result: dict[str, Any] = {"points": fleet.points, "formats": {}}
    for format_name in (*FORMATS, NEW_LAYOUTS):
        messages = all_messages[format_name]
        runs = [decode_all(format_name, messages) for _ in range(args.repeat)]
        seconds = min(s for s, _ in runs)
        samples = runs[0][1]
        result["formats"][format_name] = {
            "messages": len(messages),
            "bytes": sum(len(value) for _, value in messages),
            "samples": samples,
            "decode_points_per_s": round(fleet.points / seconds),
            "decode_samples_per_s": round(samples / seconds),
        }
    json_rate = result["formats"]["json"]["decode_points_per_s"]
    for figures in result["formats"].values():
        figures["decode_ratio_to_json"] = round(figures["decode_points_per_s"] / json_rate, 3)
    if args.kafka_bootstrap:
        with tempfile.TemporaryDirectory() as workdir:
            for format_name in FORMATS:
                messages = all_messages[format_name][:MAX_E2E_MESSAGES]
                _, samples = decode_all(format_name, messages)
                seconds = await end_to_end(args.kafka_bootstrap, format_name, messages, samples, Path(workdir))
                result["formats"][format_name]["e2e_messages"] = len(messages)
                result["formats"][format_name]["e2e_samples_per_s"] = round(samples / seconds)
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=400_000, help="data points in all, per format")
    parser.add_argument("--resources", type=int, default=4)
    parser.add_argument("--metrics", type=int, default=24)
    parser.add_argument("--series", type=int, default=5, help="attribute sets per metric")
    parser.add_argument("--points-per-series", type=int, default=5, help="points of each series in one request")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    print(f"{result['points']:,} data points a format")
    for name, figures in result["formats"].items():
        e2e = figures.get("e2e_samples_per_s")
        print(
            f"{name:24s} decode {figures['decode_points_per_s']:>11,} points/s "
            f"({figures['decode_ratio_to_json']:.2f} x json)"
            + ("" if e2e is None else f", end to end {e2e:>9,} samples/s")
        )


if __name__ == "__main__":
    cli()
