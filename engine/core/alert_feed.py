"""The way in for alerts pushed by an external alerting system: a bounded buffer that the webhook fills and the
pipeline's incident stage drains, so alerts reach incidents through the same single-writer stage as anomalies.

Under load the webhook submits faster than one notification per turn of the event loop; the reader then takes
everything waiting in one go (one wake-up for many notifications) rather than one queue hand-off per
notification, which cost the webhook about as much as its own parsing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from engine.domain.events import Alert


class AlertFeedClosedError(RuntimeError):
    """The pipeline that read the feed has finished; the sender should try again later (or elsewhere)."""


class AlertFeed:
    """Alerts waiting for the incident stage, in the order they were submitted. At most ``capacity`` submissions
    wait; a sender finding it full waits until the reader takes them (back-pressure)."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._waiting: list[Sequence[Alert]] = []
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        # Senders waiting for room learn that none will come.
        self._taken.set()

    async def submit(self, alerts: Sequence[Alert]) -> None:
        while True:
            if self._closed:
                raise AlertFeedClosedError("the pipeline no longer takes alerts")
            if len(self._waiting) < self._capacity:
                break
            self._taken.clear()
            await self._taken.wait()
        if alerts:
            self._waiting.append(tuple(alerts))
            self._arrived.set()

    def take_waiting(self) -> list[Sequence[Alert]]:
        """The submissions waiting now, one entry each, without waiting for more."""
        taken, self._waiting = self._waiting, []
        self._arrived.clear()
        self._taken.set()
        return taken

    def __aiter__(self) -> AsyncIterator[Sequence[Alert]]:
        return self._drain()

    async def _drain(self) -> AsyncIterator[Sequence[Alert]]:
        """Everything submitted since the last take, as one batch."""
        while True:
            await self._arrived.wait()
            taken = self.take_waiting()
            if taken:
                yield taken[0] if len(taken) == 1 else tuple(alert for alerts in taken for alert in alerts)
