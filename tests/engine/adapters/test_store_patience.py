"""How the store waits out an outage, on fake time: real refused connections, retried with growing pauses until
the outage limit; one outage is one pair of log lines; failures a long while apart are two outages; a chore done
again on its next round skips a round instead."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.adapters.store.resilience import MAX_PAUSE_S, Patience, StoreUnavailableError, skipped_during_outage
from tests.support.engine_process import free_port

RESILIENCE_LOG = "engine.adapters.store.resilience"


class _Time:
    """A clock that the pauses move forward; while ``held``, a pause does not end."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.paused = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        self.paused.set()
        await self.resumed.wait()


class _Database:
    """Nothing listens on its port: every attempt is a real refused connection, until ``back``."""

    def __init__(self, fake: _Time, back_at: float = float("inf")) -> None:
        self._port = free_port()
        self._fake = fake
        self._back_at = back_at
        self.attempts = 0

    async def query(self) -> str:
        self.attempts += 1
        if self._fake.now < self._back_at:
            await asyncio.open_connection("127.0.0.1", self._port)
        return "answer"


def _outages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(record, "outage", "") for record in caplog.records if record.name == RESILIENCE_LOG]


async def test_calls_wait_with_growing_pauses_and_go_on_when_the_database_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    fake = _Time()
    database = _Database(fake, back_at=60.0)
    patience = Patience(300.0, clock=fake.clock, sleep=fake.sleep)

    assert await patience.call(database.query, "reading") == "answer"

    assert fake.now >= 60.0
    # Growing from a tenth of a second (give or take the jitter) to at most MAX_PAUSE_S.
    assert fake.pauses[0] < 0.3
    assert all(later > earlier - 0.1 for earlier, later in zip(fake.pauses, fake.pauses[1:], strict=False))
    assert max(fake.pauses) <= MAX_PAUSE_S + 0.1
    assert database.attempts == len(fake.pauses) + 1
    assert not patience.in_outage
    assert _outages(caplog) == ["began", "ended"]


async def test_an_outage_past_the_limit_ends_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    fake = _Time()
    patience = Patience(30.0, clock=fake.clock, sleep=fake.sleep)

    with pytest.raises(StoreUnavailableError) as gave_up:
        await patience.call(_Database(fake).query, "storing")

    assert 30.0 <= fake.now < 36.0
    assert isinstance(gave_up.value.__cause__, ConnectionRefusedError)
    assert _outages(caplog) == ["began"]


async def test_failures_a_long_while_apart_are_two_outages_each_with_its_own_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    fake = _Time()
    patience = Patience(30.0, clock=fake.clock, sleep=fake.sleep)
    # A call that sees the database fail and is then cancelled: nobody sees that outage end.
    fake.resumed.clear()
    waiting = asyncio.ensure_future(patience.call(_Database(fake).query, "storing"))
    await asyncio.wait_for(fake.paused.wait(), timeout=10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert patience.in_outage

    fake.resumed.set()
    fake.now = 1000.0
    # Far past the first failure plus the limit: a new outage, waited out from its own start.
    assert await patience.call(_Database(fake, back_at=1010.0).query, "storing") == "answer"
    assert _outages(caplog) == ["began", "began", "ended"]


async def test_a_chore_skips_a_round_while_the_database_is_away_but_not_on_other_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    with skipped_during_outage("housekeeping"):
        await _Database(_Time()).query()
    assert _outages(caplog) == ["skipped"]
    with pytest.raises(ZeroDivisionError), skipped_during_outage("housekeeping"):
        _ = 1 / 0
