"""Scale-out: one ``aiops serve`` process against two in one consumer group, on the same topic.

    python -m benchmarks.scaleout [--partitions 2] [--series 1000] [--points 5000] [--kafka-bootstrap HOST:PORT]
                                  [--json]

A topic of ``--partitions`` partitions gets ``series x points`` samples (100 points of one series a message, keyed
by the series, so that each series stays on one partition: ``benchmarks.kafka``'s messages). Then, each in a consumer
group of its own, one ``aiops serve`` process and two processes sharing a group read the whole topic. The rate is
taken over the steady part: from the moment every process has detected samples (each has joined the group and been
given its partitions) and together they have detected 5 % of them, to the moment they have detected all of them
(start-up, imports and joining are left out; each process is a separate Python interpreter with its own event
loop). The first process to join reads every partition until the second one's join moves one to it, so the run
is long enough (``--points``) for most of it to be read by both.

What it can show depends on the cores: the broker, the producer's leftovers and every engine process share the
machine. On 2 cores, two processes compete with the broker for them; on a machine with a core per process and the
broker elsewhere, each process takes its partitions' share of the work (the engine keeps no state across
partitions: detection, incidents and checkpoints are per series, and a series stays on its partition).
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

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.kafka import produce
from benchmarks.serve_process import ServeProcess, serve

STEADY_FROM = 0.05


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def steady_rate(processes: list[ServeProcess], samples: int, timeout_s: float = 1800.0) -> float:
    """Samples/s of ``processes`` together, from every one of them reading and ``STEADY_FROM`` of ``samples``
    detected, to all of them."""
    started = time.monotonic()
    first: float | None = None
    while True:
        each = [process.samples() for process in processes]
        done = sum(each)
        now = time.monotonic()
        if first is None and done >= STEADY_FROM * samples and min(each) > 0:
            first, first_done = now, done
        if done >= samples and first is not None:
            return (done - first_done) / max(now - first, 1e-6)
        if now - started > timeout_s:
            raise RuntimeError(f"{done} of {samples} samples detected in {timeout_s} s")
        time.sleep(0.05)


def main(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-scaleout-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(args.kafka_bootstrap, topic, args.partitions))
    asyncio.run(produce(args.kafka_bootstrap, topic, args.series, args.points, 100))
    total = args.series * args.points
    result: dict[str, Any] = {"partitions": args.partitions, "samples": total, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        with serve(args.kafka_bootstrap, topic, work, AIOPS_KAFKA_GROUP_ID=f"{topic}-one") as one:
            result["one_process_samples_per_s"] = round(steady_rate([one], total))
        group = {"AIOPS_KAFKA_GROUP_ID": f"{topic}-two"}
        with (
            serve(args.kafka_bootstrap, topic, work, **group) as a,
            serve(args.kafka_bootstrap, topic, work, **group) as b,
        ):
            result["two_processes_samples_per_s"] = round(steady_rate([a, b], total))
            result["samples_per_process"] = [round(a.samples()), round(b.samples())]
    result["steady_from_samples"] = "every process reading and 5 % detected"
    result["speedup"] = round(result["two_processes_samples_per_s"] / result["one_process_samples_per_s"], 2)
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.kafka_bootstrap:
        parser.error("--kafka-bootstrap (or AIOPS_TEST_KAFKA_BOOTSTRAP) is required: a broker to produce to")
    result = main(args)
    print(json.dumps(result, sort_keys=True) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    cli()
