"""The alert feed: submissions reach the reader in order, those waiting together arrive as one batch, a full feed
holds senders back, and a closed feed refuses them."""

import asyncio

import pytest

from engine.core.alert_feed import AlertFeed, AlertFeedClosedError
from engine.domain.events import Alert, AlertStatus


def _alert(number: int) -> Alert:
    return Alert("Broken", f"fp-{number}", AlertStatus.FIRING, (("alertname", "Broken"),), starts_at=float(number))


async def test_submissions_waiting_together_arrive_as_one_batch_in_order() -> None:
    feed = AlertFeed()
    await feed.submit([_alert(1), _alert(2)])
    await feed.submit([_alert(3)])
    await feed.submit([])
    batches = aiter(feed)
    batch = await anext(batches)
    assert [alert.fingerprint for alert in batch] == ["fp-1", "fp-2", "fp-3"]
    await feed.submit([_alert(4)])
    assert [alert.fingerprint for alert in await anext(batches)] == ["fp-4"]


async def test_the_reader_waits_for_the_next_submission() -> None:
    feed = AlertFeed()
    batches = aiter(feed)
    reading = asyncio.create_task(anext(batches))
    await asyncio.sleep(0.01)
    assert not reading.done()
    await feed.submit([_alert(1)])
    assert [alert.fingerprint for alert in await asyncio.wait_for(reading, 1)] == ["fp-1"]


async def test_a_full_feed_holds_the_sender_until_the_reader_takes() -> None:
    feed = AlertFeed(capacity=2)
    await feed.submit([_alert(1)])
    await feed.submit([_alert(2)])
    third = asyncio.create_task(feed.submit([_alert(3)]))
    await asyncio.sleep(0.01)
    assert not third.done()
    batches = aiter(feed)
    assert [alert.fingerprint for alert in await anext(batches)] == ["fp-1", "fp-2"]
    await asyncio.wait_for(third, 1)
    assert [alert.fingerprint for alert in await anext(batches)] == ["fp-3"]


async def test_a_closed_feed_refuses_new_and_waiting_senders() -> None:
    feed = AlertFeed(capacity=1)
    await feed.submit([_alert(1)])
    waiting = asyncio.create_task(feed.submit([_alert(2)]))
    await asyncio.sleep(0.01)
    feed.close()
    assert feed.closed
    with pytest.raises(AlertFeedClosedError):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(AlertFeedClosedError):
        await feed.submit([_alert(3)])
