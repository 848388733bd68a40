"""The remediation workers: a bounded pool that carries out the steps the action ledger holds, off the ingest path.

Each worker claims one due step at a time (the ledger hands out at most one step per target, and none whose earlier
step in the same playbook run is unfinished), so changes to one deployment or model alias happen one at a time
while different targets proceed in parallel. Workers wake when this replica plans steps and otherwise poll, so
steps planned by another replica, or left behind by one that died, are carried out here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import Clock
from engine.domain.events import ActionResult

log = logging.getLogger(__name__)


class RemediationWorkers:
    def __init__(
        self,
        remediator: Remediator,
        report: Callable[[Sequence[ActionResult]], None],
        clock: Clock,
        *,
        concurrency: int = 4,
        poll_s: float = 1.0,
    ) -> None:
        self._remediator = remediator
        self._report = report
        self._clock = clock
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Steps were planned: look for due ones now rather than at the next poll."""
        self._wake.set()

    async def run(self, until_idle: asyncio.Event | None = None) -> None:
        """Work until cancelled, or, once ``until_idle`` is set, until nothing is due any more."""
        async with asyncio.TaskGroup() as group:
            for number in range(self._concurrency):
                group.create_task(self._work(until_idle), name=f"remediation-worker-{number}")

    async def _work(self, until_idle: asyncio.Event | None) -> None:
        while True:
            results = await self._remediator.run_due(1)
            if results:
                self._report(results)
                self._wake.set()  # a target this worker held is free again: steps queued behind it may be due
                continue
            if until_idle is not None and until_idle.is_set():
                return
            self._wake.clear()
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._clock.sleep(self._poll_s))]
            if until_idle is not None:
                waits.append(asyncio.ensure_future(until_idle.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
