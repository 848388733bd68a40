import asyncio

import pytest

from engine.core.channels import Channel, ChannelClosedError


async def test_a_full_channel_makes_the_producer_wait() -> None:
    channel: Channel[int] = Channel(capacity=2)
    await channel.send(1)
    await channel.send(2)
    blocked = asyncio.create_task(channel.send(3))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    consumed: list[int] = []

    async def consume() -> None:
        async for item in channel:
            consumed.append(item)

    consumer = asyncio.create_task(consume())
    await blocked
    await channel.close()
    await consumer
    assert consumed == [1, 2, 3]


async def test_sending_on_a_closed_channel_is_an_error() -> None:
    channel: Channel[int] = Channel(capacity=1)
    await channel.close()
    with pytest.raises(ChannelClosedError):
        await channel.send(1)


async def test_bursts_take_everything_waiting_in_order_and_end_at_close() -> None:
    channel: Channel[int] = Channel(capacity=3)
    for item in (1, 2, 3):
        await channel.send(item)
    # A sender waiting on the full channel: its item comes in the next burst.
    waiting = asyncio.create_task(channel.send(4))
    await asyncio.sleep(0)
    bursts = channel.bursts()
    assert await anext(bursts) == [1, 2, 3]
    await waiting
    await channel.send(5)
    await channel.close()
    # What was sent before the close comes out; then the stream ends.
    assert [burst async for burst in bursts] == [[4, 5]]


async def test_bursts_with_a_limit_take_at_most_that_many_items_each_in_order() -> None:
    channel: Channel[int] = Channel(capacity=8)
    for item in range(1, 6):
        await channel.send(item)
    await channel.close()
    assert [burst async for burst in channel.bursts(limit=2)] == [[1, 2], [3, 4], [5]]


async def test_a_burst_limit_below_one_is_refused() -> None:
    channel: Channel[int] = Channel(capacity=1)
    with pytest.raises(ValueError, match="limit"):
        await anext(channel.bursts(limit=0))


async def test_bursts_wait_for_the_next_item_when_nothing_is_waiting() -> None:
    channel: Channel[int] = Channel(capacity=2)
    bursts = channel.bursts()
    later = asyncio.create_task(anext(bursts))
    await asyncio.sleep(0.01)
    assert not later.done()
    await channel.send(7)
    assert await later == [7]
    await channel.close()
    assert [burst async for burst in bursts] == []


async def test_closing_a_full_channel_does_not_wait_and_its_consumer_still_gets_everything() -> None:
    # A producer closes in its finally, also when it is cancelled because the consumer's stage failed: waiting there
    # for room nobody makes hung the whole pipeline.
    channel: Channel[int] = Channel(capacity=2)
    await channel.send(1)
    await channel.send(2)
    await asyncio.wait_for(channel.close(), timeout=1)
    assert [item async for item in channel] == [1, 2]


async def test_a_full_channel_closed_ends_the_bursts_after_what_was_queued() -> None:
    channel: Channel[int] = Channel(capacity=2)
    await channel.send(1)
    await channel.send(2)
    await channel.close()
    assert [burst async for burst in channel.bursts()] == [[1, 2]]
