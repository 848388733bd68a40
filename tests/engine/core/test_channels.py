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
