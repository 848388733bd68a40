"""Signals on-call has silenced for a while: detections on a matching series open and update no incident until the
silence ends (a known maintenance, a noisy series being fixed). Alertmanager has silences for alerts; these are the
engine's own, for what its detectors find.

A silence names a metric and/or label matchers (Prometheus style) and a time window. The book of silences is kept
in the store (so every replica and a restart see the same) and held here in memory for the pipeline to ask.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from engine.core.playbooks.expressions import LabelMatcher
from engine.domain.clock import Clock
from engine.domain.events import SeriesKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalSilence:
    id: str
    metric: str | None
    matchers: tuple[str, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def covers(self, series: SeriesKey, at: float) -> bool:
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.metric is not None and series.name != self.metric:
            return False
        labels = series.label_map
        return all(matcher.matches(labels) for matcher in self.parsed_matchers)

    @cached_property
    def parsed_matchers(self) -> tuple[LabelMatcher, ...]:
        # Parsed once per silence, not at every detection it is asked about.
        return tuple(LabelMatcher.parse(matcher) for matcher in self.matchers)


class SilenceBook:
    """The silences in force, asked by the pipeline for every detection; ``now`` is the engine's clock."""

    def __init__(self, clock: Clock, silences: Iterable[SignalSilence] = ()) -> None:
        self._clock = clock
        self._silences = _readable(silences)

    def put(self, silence: SignalSilence) -> None:
        self._silences.update(_readable([silence]))

    def replace(self, silences: Iterable[SignalSilence]) -> None:
        self._silences = _readable(silences)

    def remove(self, silence_id: str) -> None:
        self._silences.pop(silence_id, None)

    def active(self) -> list[SignalSilence]:
        now = self._clock.now()
        # Ended silences are forgotten here; the store keeps them for the record.
        self._silences = {key: s for key, s in self._silences.items() if s.ends_at > now}
        return sorted(self._silences.values(), key=lambda s: (s.ends_at, s.id))

    def silencing(self, series: SeriesKey) -> SignalSilence | None:
        now = self._clock.now()
        return next((s for s in self._silences.values() if s.covers(series, now)), None)


def _readable(silences: Iterable[SignalSilence]) -> dict[str, SignalSilence]:
    """The silences whose matchers parse, by id. One that does not (written to the store by hand, or by a version
    that read matchers differently) is left out with a warning: detection asks every silence about every signal,
    and one bad row must not stop it."""
    kept = {}
    for silence in silences:
        try:
            _ = silence.parsed_matchers
        except ValueError as exc:
            log.warning("silence %s is ignored: %s", silence.id, exc)
            continue
        kept[silence.id] = silence
    return kept


class SilenceStore(Protocol):
    async def add_silence(self, silence: SignalSilence) -> None: ...

    async def end_silence(self, silence_id: str, *, at: float) -> SignalSilence: ...

    async def active_silences(self, *, at: float) -> list[SignalSilence]: ...


class SilenceDesk:
    """What on-call does with silences: each change is stored first (every replica sees it at its next refresh),
    then this replica's book follows at once."""

    def __init__(self, store: SilenceStore, book: SilenceBook, clock: Clock) -> None:
        self._store = store
        self._book = book
        self._clock = clock

    async def silence(
        self, *, metric: str | None, matchers: Sequence[str], duration_s: float, by: str, comment: str
    ) -> SignalSilence:
        for matcher in matchers:
            LabelMatcher.parse(matcher)  # ValueError naming the bad matcher
        if metric is None and not matchers:
            raise ValueError("a silence needs a metric, label matchers, or both")
        now = self._clock.now()
        silence = SignalSilence(
            id=f"sil-{uuid.uuid4().hex[:16]}",
            metric=metric,
            matchers=tuple(matchers),
            starts_at=now,
            ends_at=now + duration_s,
            created_by=by,
            comment=comment,
        )
        await self._store.add_silence(silence)
        self._book.put(silence)
        return silence

    async def end(self, silence_id: str) -> SignalSilence:
        ended = await self._store.end_silence(silence_id, at=self._clock.now())
        self._book.remove(silence_id)
        return ended

    def active(self) -> list[SignalSilence]:
        return self._book.active()

    async def refresh(self) -> None:
        """Take in the silences other replicas made or ended."""
        self._book.replace(await self._store.active_silences(at=self._clock.now()))
