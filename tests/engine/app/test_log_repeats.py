"""A flood of one log message (a client library logging every failed attempt while its server restarts) becomes
one line a window, and the next line through says how many were held back."""

from __future__ import annotations

import logging

from engine.app.log_repeats import RepeatFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logger(name: str, repeats: RepeatFilter) -> tuple[logging.Logger, _Kept]:
    kept = _Kept()
    kept.addFilter(repeats)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers = [kept]
    return logger, kept


def test_identical_messages_pass_once_a_window_and_the_next_says_how_many_were_held() -> None:
    clock = _Clock()
    logger, kept = _logger("tests.flood.client", RepeatFilter(window_s=10.0, clock=clock))
    for attempt in range(579):
        clock.now = attempt * 8.0 / 579  # 579 errors in 8 s, as a broker restart caused
        logger.error("Unable connect to node with id %d: %s", 1, "Connect call failed")
    clock.now = 12.0
    logger.error("Unable connect to node with id %d: %s", 1, "Connect call failed")

    assert len(kept.records) == 2
    first, second = kept.records
    assert first.getMessage() == "Unable connect to node with id 1: Connect call failed"
    assert second.getMessage().startswith(first.getMessage())
    assert getattr(second, "held_back", None) == 578


def test_different_messages_levels_and_loggers_are_not_held_back() -> None:
    repeats = RepeatFilter(window_s=10.0, clock=_Clock())
    client, kept = _logger("tests.flood.a", repeats)
    other, kept_other = _logger("tests.flood.b", repeats)
    client.error("node %d down", 1)
    client.error("node %d down", 2)
    client.warning("node %d down", 1)
    other.error("node %d down", 1)
    assert [record.getMessage() for record in kept.records] == ["node 1 down", "node 2 down", "node 1 down"]
    assert len(kept_other.records) == 1
