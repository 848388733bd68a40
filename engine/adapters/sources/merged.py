"""Several sample sources as one: batches are passed on as each source produces them, until every source ends.

Each source keeps its own per-series order, and a series comes from one source only (a PromQL signal or a
remote-written metric), so the merged stream keeps the order the pipeline needs. The queue between the sources
and the pipeline is bounded: a slow pipeline slows the sources down instead of piling batches up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from engine.core.ports import SampleSource
from engine.domain.events import MetricSample

_DONE = None


class MergedSource:
    def __init__(self, *sources: SampleSource, capacity: int = 16) -> None:
        if not sources:
            raise ValueError("a merged source needs at least one source")
        self._sources = sources
        self._capacity = capacity

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        queue: asyncio.Queue[Sequence[MetricSample] | None] = asyncio.Queue(self._capacity)

        async def pump(source: SampleSource) -> None:
            try:
                async for batch in source.batches():
                    await queue.put(batch)
            finally:
                await queue.put(_DONE)

        pumps = [asyncio.create_task(pump(source), name=f"source-{i}") for i, source in enumerate(self._sources)]
        try:
            remaining = len(pumps)
            while remaining:
                batch = await queue.get()
                if batch is _DONE:
                    remaining -= 1
                    continue
                yield batch
            for task in pumps:
                task.result()  # a source that failed fails the merged stream too
        finally:
            for task in pumps:
                task.cancel()
            for task in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
