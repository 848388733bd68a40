"""Alert notifications in the store, on every supported database: kept once per digest, found again on start."""

from engine.adapters.store.sql_store import AlertNotification, SqlStore


def _notification(key: str, at: float) -> AlertNotification:
    return AlertNotification(key=key, group_key="g", status="firing", alert_count=5, received_at=at)


async def test_a_digest_is_kept_once_and_recent_digests_come_back_oldest_first(database_url: str) -> None:
    store = await SqlStore.open(database_url)
    await store.record_alert_notifications([_notification("b", 200.0), _notification("a", 100.0)])
    # A redelivery in a later batch and a duplicate inside one batch are both left as they were.
    await store.record_alert_notifications(
        [_notification("a", 300.0), _notification("c", 400.0), _notification("c", 401.0)]
    )
    await store.record_alert_notifications([])
    assert await store.recent_alert_notification_keys(since=0.0) == ["a", "b", "c"]
    assert await store.recent_alert_notification_keys(since=150.0) == ["b", "c"]
    await store.close()
