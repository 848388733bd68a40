"""The way in for alerts pushed by an external alerting system: a bounded queue that the webhook fills and the
pipeline's incident stage drains, so alerts reach incidents through the same single-writer stage as anomalies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from engine.domain.events import Alert


class AlertFeedClosedError(RuntimeError):
    """The pipeline that read the feed has finished; the sender should try again later (or elsewhere)."""


class AlertFeed:
    """Batches of alerts waiting for the incident stage; a full feed makes the webhook wait (back-pressure)."""

    def __init__(self, capacity: int = 256) -> None:
        self._queue: asyncio.Queue[Sequence[Alert]] = asyncio.Queue(maxsize=capacity)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    async def submit(self, alerts: Sequence[Alert]) -> None:
        if self._closed:
            raise AlertFeedClosedError("the pipeline no longer takes alerts")
        if alerts:
            await self._queue.put(tuple(alerts))

    def __aiter__(self) -> AsyncIterator[Sequence[Alert]]:
        return self._drain()

    async def _drain(self) -> AsyncIterator[Sequence[Alert]]:
        while True:
            yield await self._queue.get()
