"""Keeps a flood of one log message from burying the rest: client libraries log every failed attempt while a
server restarts (aiokafka logged 579 errors in 8 s while a broker restarted), and the operator needs one line
saying what is wrong, then the count of the lines held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

# One identical message a window; the next one through says how many were held back meanwhile.
REPEAT_WINDOW_S = 10.0
# Distinct messages remembered at most: past that, those whose window is over are forgotten.
_REMEMBERED = 1000


@dataclass
class _Seen:
    passed_at: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """Lets one record of each identical message (logger, level and text) through per ``window_s`` and counts the
    rest; the next one let through carries the count."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        seen = self._seen.get(key)
        if seen is not None and now - seen.passed_at < self._window_s:
            seen.held += 1
            return False
        if seen is not None and seen.held:
            # The text is final here: the record's arguments are already in it.
            record.msg = f"{message} ({seen.held} identical messages held back in the last {now - seen.passed_at:.0f}s)"
            record.args = None
            record.held_back = seen.held
        if len(self._seen) >= _REMEMBERED:
            self._forget(now)
        self._seen[key] = _Seen(now)
        return True

    def _forget(self, now: float) -> None:
        self._seen = {key: seen for key, seen in self._seen.items() if now - seen.passed_at < self._window_s}
        while len(self._seen) >= _REMEMBERED:
            # A flood of distinct messages within one window: the oldest are forgotten first.
            del self._seen[next(iter(self._seen))]
