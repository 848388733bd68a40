"""How a store takes a process' incident changes into what it holds: the one rule every incident store applies.

A process sees only the signals of the series it reads. With several replicas (Kafka partitions spread over
processes), the series of one group reach different processes, each of which may open the group's incident. The
store decides, in one transaction per batch (serialised per group):

- an incident opened for a group that already has an active incident in the store (opened by another replica, or
  by this one before a crash) is that incident: the opening becomes the signal joining it (``JOINED``), and the
  process adopts it (``IncidentManager.adopt``);
- a signal the store already holds up to a later time is a replay (after a crash or a rebalance) and changes
  nothing: anomalies of one series arrive in time order, and one series is read by one process at a time;
- a resolution marks the process' signals quiet; the incident resolves only when every signal the store holds is
  quiet, otherwise the change is recorded as ``QUIETED`` and the incident stays open;
- an incident a person resolved keeps its state: later signals update its figures only.

``Merge`` works on values: the store loads what it holds, applies the changes in order and writes back the
incidents that changed and the changes as stored (the timeline).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from engine.core.correlation import ALERTS_METRIC, GROUP_PREFIX
from engine.domain.events import (
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
    Signal,
)

_QUIETING = frozenset({IncidentChangeKind.QUIETED, IncidentChangeKind.RESOLVED})


@dataclass
class Merge:
    """Changes applied, in order, to the incidents a store holds."""

    # Held incidents by id: those the changes name, and the active incident of each group they touch.
    held: dict[str, Incident]
    # The active incident of each group fingerprint, among the held ones.
    active: dict[str, str] = field(default_factory=dict)
    # Incidents opened by these changes (new rows) and incidents changed by them (by id, final state).
    created: set[str] = field(default_factory=set)
    changed: dict[str, Incident] = field(default_factory=dict)
    # A process' incident id -> the held incident it turned out to be.
    merged_into: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, held: Iterable[Incident]) -> Merge:
        merge = cls({incident.id: incident for incident in held})
        for incident in merge.held.values():
            if incident.state is not IncidentState.RESOLVED:
                merge.active[incident.fingerprint] = incident.id
        return merge

    def apply(self, changes: Sequence[IncidentChange]) -> list[IncidentChange]:
        """The changes as the store records them (held ones left out), in order."""
        stored = []
        for change in changes:
            recorded = self._apply(change)
            if recorded is not None:
                stored.append(recorded)
        return stored

    def _apply(self, change: IncidentChange) -> IncidentChange | None:
        local = change.incident
        target_id = self.merged_into.get(local.id, local.id)
        target = self.held.get(target_id)
        if target is None:
            # The group's active incident, under another id: another replica opened it, or this process merged
            # into it and then restarted from a checkpoint taken before the store said so.
            other = self.active.get(local.fingerprint)
            if other is not None and other != local.id:
                self.merged_into[local.id] = other
                target = self.held[other]
        if target is None:
            # New to the store (an opening, or the first change the store sees of an incident whose opening it
            # never got): taken as it is.
            self._keep(local, created=True)
            return change
        if change.kind in _QUIETING:
            return self._quiet(target, change)
        return self._signal(target, change)

    def _keep(self, incident: Incident, *, created: bool = False) -> None:
        self.held[incident.id] = incident
        self.changed[incident.id] = incident
        if created:
            self.created.add(incident.id)
        if incident.state is IncidentState.RESOLVED:
            if self.active.get(incident.fingerprint) == incident.id:
                del self.active[incident.fingerprint]
        else:
            self.active[incident.fingerprint] = incident.id

    def _signal(self, target: Incident, change: IncidentChange) -> IncidentChange | None:
        local = change.incident
        series = change.signal.series if change.signal is not None else alert_series(change)
        own = None if series is None else local.signal_of(series)
        held = None if series is None else target.signal_of(series)
        if _holds(target, change, own, held):
            return None
        signals = target.signals
        added = 1
        if own is not None:
            merged = own if held is None else _merged_signal(held, own)
            added = merged.count - (held.count if held is not None else 0)
            signals = (*[s for s in target.signals if s.series != own.series], merged)
        at = change.signal.timestamp if change.signal is not None else local.last_signal_at
        if own is None and target.id == local.id:
            # No signal of its own to merge (an incident stored before signals were, a series past MAX_SIGNALS):
            # the process' figures of its own incident stand, and never go back.
            count = max(target.signal_count, local.signal_count)
        else:
            count = target.signal_count + max(added, 0)
        kept = replace(
            target,
            signals=signals,
            last_signal_at=max(target.last_signal_at, at),
            signal_count=count,
            peak_score=max(target.peak_score, local.peak_score if own is None else own.peak_score),
            severity=max(target.severity, local.severity if own is None else own.severity),
        )
        self._keep(kept)
        kind = change.kind
        if target.id != local.id and kind is IncidentChangeKind.OPENED:
            kind = IncidentChangeKind.JOINED if held is None else IncidentChangeKind.UPDATED
        return replace(change, kind=kind, incident=kept)

    def _quiet(self, target: Incident, change: IncidentChange) -> IncidentChange | None:
        local = change.incident
        if target.state is IncidentState.RESOLVED:
            # Resolved already: by this very change replayed (held), by the replica whose signal went quiet last,
            # or by a person, whose resolution has a time of its own and is kept; the engine's later one is still
            # listed in the timeline.
            if change.kind is IncidentChangeKind.QUIETED or target.resolved_at == local.resolved_at:
                return None
            if target.fingerprint.startswith(GROUP_PREFIX) and target.id != local.id:
                return None
            return replace(change, incident=target)
        quiet = {s.series: s for s in local.signals if not s.active}
        signals = tuple(
            replace(s, quiet_at=quiet[s.series].quiet_at, last_at=max(s.last_at, quiet[s.series].last_at))
            if s.series in quiet and s.active
            else s
            for s in target.signals
        )
        newly = sum(1 for old, new in zip(target.signals, signals, strict=True) if old.active and not new.active)
        if target.signals and not newly and change.kind is IncidentChangeKind.QUIETED:
            return None
        if all(not s.active for s in signals) and change.kind is IncidentChangeKind.RESOLVED:
            resolved_at = max(
                [s.quiet_at for s in signals if s.quiet_at is not None]
                + ([local.resolved_at] if local.resolved_at is not None else [])
            )
            kept = replace(
                target,
                signals=signals,
                state=IncidentState.RESOLVED,
                resolved_at=resolved_at,
                last_signal_at=max(target.last_signal_at, local.last_signal_at),
                state_since=change.at,
            )
            self._keep(kept)
            return replace(change, incident=kept)
        if not newly:
            return None
        kept = replace(target, signals=signals)
        self._keep(kept)
        return replace(change, kind=IncidentChangeKind.QUIETED, incident=kept)


def alert_series(change: IncidentChange) -> SeriesKey | None:
    """The series of the alert behind ``change`` (``ALERTS{alertname=...,...}``), None if none is."""
    alert = change.alert
    return None if alert is None else SeriesKey.of(ALERTS_METRIC, {**dict(alert.labels), "alertname": alert.name})


def _holds(target: Incident, change: IncidentChange, own: Signal | None, held: Signal | None) -> bool:
    """Whether the store already holds this signal change (a replay)."""
    if own is not None and own.alert:
        return held is not None and held.active and held.first_at == own.first_at
    if change.signal is not None and held is not None:
        return held.last_at >= change.signal.timestamp
    if own is None and target.id == change.incident.id:
        # A series past MAX_SIGNALS, or an incident stored before signals were: only its figures can tell.
        return target.signal_count >= change.incident.signal_count
    return False


def _merged_signal(held: Signal, own: Signal) -> Signal:
    """The store's signal of a series and the process' newer one: the same episode continued, or a new episode
    of a signal that had gone quiet (counted on top of the earlier one)."""
    if own.first_at > held.last_at:
        stronger = own.peak_score > held.peak_score
        return replace(
            own,
            first_at=held.first_at,
            count=held.count + own.count,
            peak_at=own.peak_at if stronger else held.peak_at,
            peak_value=own.peak_value if stronger else held.peak_value,
            peak_score=max(own.peak_score, held.peak_score),
            severity=max(own.severity, held.severity),
        )
    return replace(own, first_at=min(own.first_at, held.first_at), count=max(own.count, held.count))
