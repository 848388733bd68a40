"""Readiness: whether the engine can do its work now, asked of every server it depends on under a short deadline.

``/readyz`` must answer within a second even while a dependency hangs (a frozen database holds a connection
without a word): the checks run at once, each gets ``READY_TIMEOUT_S``, and one that fails or does not answer in
time makes the engine not ready. A check that overruns is not cut short: cancelling a client in the middle of a
call cost seconds of its own clean-up (a pooled connection given up on a frozen server), so the check runs on and
the probes meanwhile answer ``timeout`` at once instead of stacking more waiting calls on the same server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

# A check raises when its server cannot be reached; what it returns is ignored.
ReadinessCheck = Callable[[], Awaitable[object]]
READY_TIMEOUT_S = 0.8


class InputClosedError(Exception):
    """Raised by a check whose way in no longer takes input (the pipeline behind it has finished): ``closed``."""


class Readiness:
    """The checks of one application, each with at most one call under way."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], timeout_s: float = READY_TIMEOUT_S) -> None:
        self._checks = dict(checks)
        self._timeout_s = timeout_s
        self._running: dict[str, asyncio.Task[object]] = {}

    async def probe(self) -> dict[str, str]:
        """Each check's outcome by name: ``ok``, ``timeout`` (no answer within the deadline), ``unreachable`` or
        ``closed`` (an ingest path whose pipeline has finished)."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._outcome(name) for name in names))
        return dict(zip(names, outcomes, strict=True))

    async def _outcome(self, name: str) -> str:
        call = self._running.get(name)
        if call is None:
            call = self._running[name] = asyncio.ensure_future(self._checks[name]())
        done, _ = await asyncio.wait({call}, timeout=self._timeout_s)
        if not done:
            return "timeout"
        # Ended: the next probe calls again. Its outcome is read here, whichever probe started it.
        if self._running.get(name) is call:
            del self._running[name]
        if call.cancelled():
            return "timeout"
        failure = call.exception()
        if failure is None:
            return "ok"
        if isinstance(failure, TimeoutError):  # the client's own deadline (a statement timeout)
            return "timeout"
        if isinstance(failure, InputClosedError):
            return "closed"
        log.info("readiness: %s unreachable (%s: %s)", name, type(failure).__name__, failure)
        return "unreachable"
