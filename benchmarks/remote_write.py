"""remote_write bodies decoded by the hand-written wire reader and by the protobuf library, in the same run.

    python -m benchmarks.remote_write [--rounds 7] [--json]

Both readers take the same snappy-compressed WriteRequest bodies: 1,000 series of 6 labels with 3 samples each,
10,000 series of 8 labels with 2 samples each (a large Prometheus shard's request), and 20,000 series of 6 labels
with 5 samples each (100,000 samples, the default sample bound). Rounds interleave the readers, each round starting
with the other one, and every figure is the median over the rounds, so that a noisy machine slows both alike.
Printed for each body: samples decoded per second by each reader and ``library_over_hand_written``, the ratio of
the two (above 1: the library is faster).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable

import cramjam

from engine.adapters.prometheus.remote_write import (
    DecodedWrite,
    decode_write_request,
    decode_write_request_library,
)
from engine.adapters.prometheus.remote_write_types import Label, Sample, TimeSeries, WriteRequest

Decoder = Callable[[bytes], DecodedWrite]
# (name, series, labels a series besides __name__, samples a series)
BODIES = [("1k_series", 1_000, 6, 3), ("10k_series", 10_000, 8, 2), ("100k_samples", 20_000, 6, 5)]


def body(series: int, labels: int, samples: int) -> bytes:
    """A compressed WriteRequest of ``series`` series, label values shaped like a Kubernetes scrape's."""
    request = WriteRequest()
    for index in range(series):
        names = [Label(name="__name__", value=f"http_requests_total_{index % 50}")]
        names += [Label(name=f"label_{n}", value=f"value-{n}-{index}.serving.svc:8080") for n in range(labels)]
        points = [Sample(value=float(index + n), timestamp=1_700_000_000_000 + 15_000 * n) for n in range(samples)]
        request.timeseries.append(TimeSeries(labels=names, samples=points))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _seconds(decoder: Decoder, data: bytes) -> float:
    gc.collect()  # garbage of the previous decode is not charged to this one
    started = time.perf_counter()
    decoder(data)
    return time.perf_counter() - started


def main(rounds: int) -> dict[str, dict[str, float]]:
    readers: dict[str, Decoder] = {"hand_written": decode_write_request, "library": decode_write_request_library}
    figures: dict[str, dict[str, float]] = {}
    for name, series, labels, samples in BODIES:
        data = body(series, labels, samples)
        count = series * samples
        if readers["hand_written"](data) != readers["library"](data):
            raise RuntimeError(f"the readers disagree about {name}")
        times: dict[str, list[float]] = {reader: [] for reader in readers}
        for round_ in range(rounds):
            order = list(readers) if round_ % 2 == 0 else list(reversed(readers))
            for reader in order:
                times[reader].append(_seconds(readers[reader], data))
        rates = {f"{reader}_samples_per_s": count / statistics.median(times[reader]) for reader in readers}
        rates["library_over_hand_written"] = rates["library_samples_per_s"] / rates["hand_written_samples_per_s"]
        figures[name] = {"samples": count, "body_bytes": len(data), **rates}
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = main(args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for body_name, row in result.items():
            hand_written, library = row["hand_written_samples_per_s"], row["library_samples_per_s"]
            print(
                f"{body_name:14} {row['samples']:>8.0f} samples  hand-written {hand_written:>10.0f}/s"
                f"  library {library:>10.0f}/s  ratio {row['library_over_hand_written']:.2f}"
            )
