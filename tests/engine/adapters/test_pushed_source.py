"""The pushed source: what remote_write takes reaches the pipeline in time order, in batches of a bounded size."""

from __future__ import annotations

import pytest

from engine.adapters.sources.pushed import PushedSource
from engine.domain.events import MetricSample, SeriesKey


async def _batches(source: PushedSource) -> list[list[MetricSample]]:
    await source.close()
    return [list(batch) async for batch in source.batches()]


async def test_a_large_push_is_queued_as_batches_of_at_most_max_batch_samples_in_time_order() -> None:
    source = PushedSource(max_batch=4)
    # Timestamps out of order across series, as one request of several series carries them.
    pushed = [MetricSample(SeriesKey.of("up", {"pod": str(n % 3)}), 1000.0 + (n * 7) % 10, float(n)) for n in range(10)]
    await source.push(pushed)
    batches = await _batches(source)
    assert [len(batch) for batch in batches] == [4, 4, 2]
    received = [sample for batch in batches for sample in batch]
    assert received == sorted(pushed, key=lambda sample: sample.timestamp)


async def test_an_empty_push_queues_nothing() -> None:
    source = PushedSource()
    await source.push([])
    assert await _batches(source) == []


def test_a_batch_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        PushedSource(max_batch=0)
