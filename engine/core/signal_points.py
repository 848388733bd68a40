"""Collects the samples of incidents' signals for the on-call page: each signal's series from the batch that held
its first anomaly (so the picture shows what came just before) until its incident resolves.

It runs in the incident stage, which stores each burst of batches with the changes they caused, then the points.
Only series with a live signal are followed, so a batch costs one set lookup per sample while incidents are open
and nothing otherwise; each
signal keeps at most ``max_points`` samples (the first ones: the onset is what a person looks at).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.batches import SampleBatch
from engine.domain.events import IncidentChange, IncidentChangeKind, MetricSample, SeriesKey

# One point a minute for a day, or one every ten seconds for four hours.
MAX_POINTS_PER_SIGNAL = 1440
# How far before a signal's first anomaly its picture starts (what the batch of its onset holds of it).
CONTEXT_S = 1800.0
# Series followed at once: past that, new signals are drawn from what is already kept only.
MAX_FOLLOWED = 10_000

# (incident id, series text, time, value): one sample of one signal, as stored.
SignalPoint = tuple[str, str, float, float]


@dataclass(slots=True)
class _Followed:
    incident_id: str
    series_text: str
    # Samples from ``since`` (some context before the first anomaly) up to ``until`` (the incident's resolution).
    since: float
    until: float = math.inf
    kept: int = 0


class SignalPoints:
    def __init__(self, max_points: int = MAX_POINTS_PER_SIGNAL, max_followed: int = MAX_FOLLOWED) -> None:
        self._max_points = max_points
        self._max_followed = max_followed
        self._followed: dict[SeriesKey, _Followed] = {}

    def follow(self, changes: Sequence[IncidentChange]) -> None:
        """Start following the series of signals these (stored) changes open or join."""
        for change in changes:
            if change.signal is None or change.kind is IncidentChangeKind.RESOLVED:
                continue
            series, incident_id = change.signal.series, change.incident.id
            followed = self._followed.get(series)
            if (followed is None or followed.incident_id != incident_id) and len(self._followed) < self._max_followed:
                signal = change.incident.signal_of(series)
                onset = signal.first_at if signal is not None else change.signal.timestamp
                self._followed[series] = _Followed(incident_id, str(series), onset - CONTEXT_S)

    def stop(self, changes: Sequence[IncidentChange]) -> None:
        """The incidents these changes resolve end their signals' pictures at the resolution; ``points`` keeps what
        came before it, then ``drop_stopped`` stops following them."""
        for change in changes:
            if change.kind is IncidentChangeKind.RESOLVED:
                until = change.incident.resolved_at if change.incident.resolved_at is not None else change.at
                for signal in change.incident.signals:
                    followed = self._followed.get(signal.series)
                    if followed is not None and followed.incident_id == change.incident.id:
                        followed.until = until

    def drop_stopped(self) -> None:
        self._followed = {s: entry for s, entry in self._followed.items() if entry.until == math.inf}

    def points(self, batch: Sequence[MetricSample]) -> list[SignalPoint]:
        """The samples of ``batch`` that belong to followed signals (up to each one's bound)."""
        if not self._followed:
            return []
        points: list[SignalPoint] = []
        followed_by_series = self._followed
        if isinstance(batch, SampleBatch):
            # Kafka's batches are columns in runs of one series: one lookup per run, no sample objects built.
            timestamps, values = batch.timestamps, batch.values
            for series, start, end in batch.runs():
                entry = followed_by_series.get(series)
                if entry is not None:
                    for row in range(start, end):
                        self._keep(entry, float(timestamps[row]), float(values[row]), points)
            return points
        for sample in batch:
            entry = followed_by_series.get(sample.series)
            if entry is not None:
                self._keep(entry, sample.timestamp, sample.value, points)
        return points

    def _keep(self, entry: _Followed, at: float, value: float, points: list[SignalPoint]) -> None:
        if entry.kept < self._max_points and entry.since <= at <= entry.until:
            entry.kept += 1
            points.append((entry.incident_id, entry.series_text, at, value))

    def forget(self, incident_id: str) -> None:
        """A person resolved the incident: its signals are no longer followed."""
        self._followed = {s: entry for s, entry in self._followed.items() if entry.incident_id != incident_id}
