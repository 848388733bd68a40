"""What a team might build instead of the engine, on the same topic: Quix Streams pipelines (librdkafka underneath),
each the few lines its documentation suggests. ``benchmarks.kafka`` runs them beside the engine in the same run.

    python -m benchmarks.quix_peer --bootstrap HOST:PORT --topic TOPIC --records N --pipeline NAME

Pipelines (every message is the engine's columnar JSON: one series' points, keyed by its series):

- ``decode``: consume and JSON-decode each message (Quix's JSON deserializer), nothing else;
- ``ewma``: a per-series EWMA z-score over every point (mean and variance with alpha 0.01, a point more than six
  deviations away counted as an anomaly), state in a Python dict;
- ``ewma_state``: the same, with its state in Quix State (RocksDB, backed by a changelog topic), as Quix's
  documentation recommends for state that must survive a restart;
- ``hst``: river's Half-Space Trees per series behind a min-max scaler (river's own recipe), state in a dict; slow,
  so ``benchmarks.kafka`` gives it fewer records.

Quix's ``Application`` owns its process (its signal handlers, its poll loop), so each pipeline runs in a process of
its own and prints one JSON object: pipeline, records, samples, anomalies and seconds from the application's start
(joining its consumer group included, as the engine's figure includes its own) until it has processed ``--records``
messages. Needs the ``bench`` extra: ``pip install 'aiops-engine[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

PIPELINES = ("decode", "ewma", "ewma_state", "hst")
ALPHA = 0.01
Z_ANOMALY = 6.0


class _Counts:
    def __init__(self) -> None:
        self.samples = 0
        self.anomalies = 0


def _ewma_over(state: list[float], samples: list[list[float]]) -> int:
    """A message's points into ``[mean, variance, seen]``, in one loop over locals (as a careful author would
    write it: a call per point would cost a third more); how many lay more than ``Z_ANOMALY`` deviations away."""
    mean, variance, seen = state
    anomalies = 0
    keep = 1.0 - ALPHA
    limit = Z_ANOMALY * Z_ANOMALY
    for _, value in samples:
        deviation = value - mean
        if seen >= 30 and deviation * deviation > limit * variance > 0.0:
            anomalies += 1
        if seen:
            mean += ALPHA * deviation
            variance = keep * (variance + ALPHA * deviation * deviation)
        else:
            mean = value
        seen += 1
    state[0], state[1], state[2] = mean, variance, seen
    return anomalies


def _decode(counts: _Counts) -> Callable[[dict[str, Any]], None]:
    def step(message: dict[str, Any]) -> None:
        counts.samples += len(message["samples"])

    return step


def _ewma_in_dict(counts: _Counts) -> Callable[[dict[str, Any], Any, int, Any], None]:
    states: dict[Any, list[float]] = {}

    def step(message: dict[str, Any], key: Any, _timestamp: int, _headers: Any) -> None:
        state = states.get(key)
        if state is None:
            state = states[key] = [0.0, 0.0, 0.0]
        counts.anomalies += _ewma_over(state, message["samples"])
        counts.samples += len(message["samples"])

    return step


def _ewma_in_quix_state(counts: _Counts) -> Callable[[dict[str, Any], Any], None]:
    def step(message: dict[str, Any], state: Any) -> None:
        ewma = state.get("ewma") or [0.0, 0.0, 0.0]
        counts.anomalies += _ewma_over(ewma, message["samples"])
        state.set("ewma", ewma)
        counts.samples += len(message["samples"])

    return step


def _half_space_trees(counts: _Counts) -> Callable[[dict[str, Any], Any, int, Any], None]:
    from river import anomaly, compose, preprocessing  # noqa: PLC0415 (only this pipeline needs river)

    models: dict[Any, Any] = {}

    def step(message: dict[str, Any], key: Any, _timestamp: int, _headers: Any) -> None:
        model = models.get(key)
        if model is None:
            model = models[key] = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=1))
        for _, value in message["samples"]:
            point = {"value": value}
            counts.anomalies += model.score_one(point) > 0.9
            model.learn_one(point)
        counts.samples += len(message["samples"])

    return step


def run(bootstrap: str, topic: str, records: int, pipeline: str) -> dict[str, Any]:
    from quixstreams import Application  # noqa: PLC0415 (the bench extra; the message says how to get it)

    counts = _Counts()
    with tempfile.TemporaryDirectory() as state_dir:
        app = Application(
            broker_address=bootstrap,
            consumer_group=f"bench-quix-{pipeline}-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        # Each update registers itself with the application, which runs every frame it made.
        frame = app.dataframe(app.topic(topic, value_deserializer="json", key_deserializer="bytes"))
        if pipeline == "decode":
            frame = frame.update(_decode(counts))
        elif pipeline == "ewma":
            frame = frame.update(_ewma_in_dict(counts), metadata=True)
        elif pipeline == "ewma_state":
            frame = frame.update(_ewma_in_quix_state(counts), stateful=True)
        elif pipeline == "hst":
            frame = frame.update(_half_space_trees(counts), metadata=True)
        else:
            raise SystemExit(f"unknown pipeline {pipeline!r}: one of {', '.join(PIPELINES)}")
        started = time.perf_counter()
        app.run(count=records, collect=False)
        seconds = time.perf_counter() - started
    return {
        "pipeline": pipeline,
        "records": records,
        "samples": counts.samples,
        "anomalies": counts.anomalies,
        "seconds": round(seconds, 3),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True, help="messages to process, from the topic's start")
    parser.add_argument("--pipeline", choices=PIPELINES, required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.bootstrap, args.topic, args.records, args.pipeline)))


if __name__ == "__main__":
    cli()
