"""Which webhook notifications were already received: kept in memory for the reply, written behind to the store.

A redelivery is recognised by the SHA-256 of its body. The set of recent digests lives in the process (loaded
from the store on first use, so a restart still knows what came before) and answers at once; the store is
written behind, notifications that arrive together in one transaction. Waiting for that commit before
replying would buy nothing: the alert itself travels on to the incident stage in memory, so a crash after the
reply loses its effect either way, and a notification whose record was lost with it is taken as new when
Alertmanager repeats it, which is the better outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from sqlalchemy.exc import SQLAlchemyError

from engine.adapters.store.sql_store import AlertNotification, SqlStore

log = logging.getLogger(__name__)

# Digests remembered in memory; Alertmanager redelivers within minutes, so a day's worth is plenty.
MEMORY = 100_000
LOOKBACK_S = 86_400.0
FLUSH_DELAY_S = 0.05


class NotificationWriter:
    def __init__(self, store: SqlStore, max_batch: int = 512) -> None:
        self._store = store
        self._max_batch = max_batch
        self._seen: OrderedDict[str, None] | None = None
        self._loading = asyncio.Lock()
        self._pending: list[AlertNotification] = []
        self._flusher: asyncio.Task[None] | None = None
        self.write_failures = 0

    async def record(self, notification: AlertNotification) -> bool:
        """True if ``notification`` is new (and now remembered), False if the same body was received before."""
        seen = self._seen if self._seen is not None else await self._load(notification.received_at)
        if notification.key in seen:
            seen.move_to_end(notification.key)
            return False
        seen[notification.key] = None
        if len(seen) > MEMORY:
            seen.popitem(last=False)
        self._pending.append(notification)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="notification-writer")
        return True

    async def flushed(self) -> None:
        """Wait until everything recorded so far is in the store."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _load(self, now: float) -> OrderedDict[str, None]:
        async with self._loading:
            if self._seen is None:
                keys = await self._store.recent_alert_notification_keys(since=now - LOOKBACK_S)
                self._seen = OrderedDict.fromkeys(keys)
            return self._seen

    async def _flush(self) -> None:
        # Gather what arrives in the next moment into the same transaction: few commits under load.
        await asyncio.sleep(FLUSH_DELAY_S)
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                await self._store.record_alert_notifications(batch)
            except SQLAlchemyError:
                # The digests stay in memory, so this process still recognises redeliveries.
                self.write_failures += 1
                log.exception("could not keep %d alert notifications", len(batch))
