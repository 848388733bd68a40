"""A sample source fed from outside (Prometheus remote_write): a bounded queue between the HTTP handler and the
pipeline. A full queue makes the handler wait, and a sender that waits too long retries, which is the
back-pressure remote_write expects.

A large request is queued as several batches of at most ``max_batch`` samples: the pipeline handles a batch at a
time on the event loop, and a hundred thousand samples at once would hold the loop (health checks, other requests)
for a tenth of a second or more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from engine.domain.batches import parts
from engine.domain.events import MetricSample

DEFAULT_MAX_BATCH = 2048


class PushedSource:
    def __init__(self, capacity: int = 64, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._queue: asyncio.Queue[Sequence[MetricSample] | None] = asyncio.Queue(maxsize=capacity)
        self._max_batch = max_batch

    async def push(self, samples: Sequence[MetricSample]) -> None:
        if samples:
            # Each series in time order, as the pipeline's sources promise; batches are queued in that order.
            for part in parts(sorted(samples, key=lambda s: s.timestamp), self._max_batch):
                await self._queue.put(part)

    async def close(self) -> None:
        """End the stream once what was pushed before has been read."""
        await self._queue.put(None)

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        while (batch := await self._queue.get()) is not None:
            yield batch
