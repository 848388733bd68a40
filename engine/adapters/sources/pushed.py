"""A sample source fed from outside (Prometheus remote_write): a bounded queue between the HTTP handler and the
pipeline. A full queue makes the handler wait, and a sender that waits too long retries, which is the
back-pressure remote_write expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from engine.domain.events import MetricSample


class PushedSource:
    def __init__(self, capacity: int = 64) -> None:
        self._queue: asyncio.Queue[Sequence[MetricSample] | None] = asyncio.Queue(maxsize=capacity)

    async def push(self, samples: Sequence[MetricSample]) -> None:
        if samples:
            # Each series in time order, as the pipeline's sources promise.
            await self._queue.put(sorted(samples, key=lambda s: s.timestamp))

    async def close(self) -> None:
        """End the stream once what was pushed before has been read."""
        await self._queue.put(None)

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        while (batch := await self._queue.get()) is not None:
            yield batch
