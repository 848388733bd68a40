"""Bounded in-process channels between pipeline stages: the embedded event bus.

A full channel makes the producer wait, which is how back-pressure reaches the source. Closing a channel lets
its consumer drain what is left and then stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ChannelClosedError(RuntimeError):
    """Raised when sending on a closed channel."""


class _Closed:
    """Marks the end of a channel's stream."""


_CLOSED = _Closed()


class Channel(Generic[T]):
    """A bounded FIFO for one producer and one consumer."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[T | _Closed] = asyncio.Queue(maxsize=capacity)
        self._closed = False
        # Closed while the queue was full: the consumer stops once it has taken what is queued.
        self._end_after_queue = False

    async def send(self, item: T) -> None:
        if self._closed:
            raise ChannelClosedError("send on a closed channel")
        await self._queue.put(item)

    async def close(self) -> None:
        """End the stream after what is queued. Never waits: a producer closes in its ``finally``, also when it is
        being cancelled because its consumer failed, and waiting there for room that nobody makes would hang."""
        if not self._closed:
            self._closed = True
            try:
                self._queue.put_nowait(_CLOSED)
            except asyncio.QueueFull:
                self._end_after_queue = True

    def _ended(self) -> bool:
        return self._end_after_queue and self._queue.empty()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._drain()

    async def _drain(self) -> AsyncIterator[T]:
        while not self._ended():
            item = await self._queue.get()
            if isinstance(item, _Closed):
                return
            yield item

    async def bursts(self, limit: int | None = None) -> AsyncIterator[list[T]]:
        """The items in order, as lists: each wake-up takes the first item and every one already waiting behind
        it (at most the capacity, and at most ``limit``), so that a consumer that fell behind can handle its
        backlog in one go."""
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        while not self._ended():
            first = await self._queue.get()
            if isinstance(first, _Closed):
                return
            burst = [first]
            while not self._queue.empty() and (limit is None or len(burst) < limit):
                item = self._queue.get_nowait()
                if isinstance(item, _Closed):
                    yield burst
                    return
                burst.append(item)
            yield burst
