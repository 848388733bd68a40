"""Starting a Kafka client while its brokers may be away for a moment.

A broker restarted in a rolling upgrade, or a pod started before the brokers' Service answers, is a fault the engine
outlives: a client's first connection is tried again with backoff for up to ``limit_s`` seconds, with one log line a
try. Only past that does the connection error reach the command, which ends with one line and status 3.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaConnectionError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)


async def start_when_reachable(
    start: Callable[[], Awaitable[None]],
    *,
    stop: Callable[[], Awaitable[None]],
    what: str,
    limit_s: float,
) -> None:
    """Run ``start`` (a client's ``start``), again while it cannot reach a broker, for up to ``limit_s`` seconds
    (0: once); if it still fails, ``stop`` the client (its connections and tasks) and raise the error."""

    def waiting(state: RetryCallState) -> None:
        log.warning(
            "%s: no broker reachable yet (%s); trying again (%.0f of at most %.0f s waited)",
            what,
            state.outcome.exception() if state.outcome is not None else "",
            state.seconds_since_start or 0.0,
            limit_s,
        )

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaConnectionError),
            stop=stop_after_delay(limit_s),
            wait=wait_exponential(multiplier=0.5, max=10.0),
            before_sleep=waiting,
            reraise=True,
        ):
            with attempt:
                await start()
    except BaseException:
        with contextlib.suppress(Exception):
            await stop()
        raise
