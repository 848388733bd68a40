"""Turns anomalies into incidents: deduplication by fingerprint, a minimum of signals before opening (so a single
noisy point does not page anyone), and automatic resolution once the signal has been quiet long enough.

Time here is event time (the signals' own timestamps), so a replay gives the same incidents however fast it runs.

Alerts from an external alerting system (Alertmanager) are signals too, with their own rules: the alerting system
already decided that something is wrong, so a firing alert opens an incident at once, and only its resolved
notification resolves it (never quiet time). Alertmanager delivers at least once, so a notification seen before
changes nothing. An alert incident's series is ``ALERTS{alertname="...",...}``, the series Prometheus itself
keeps for alerts, so playbook triggers match alerts with the same label matchers as metric series.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.domain.events import (
    Alert,
    AlertStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
)
from engine.domain.limits import clip_text

ALERT_PREFIX = "alert:"
# Resolved alerts remembered so that a late duplicate of their firing notification does not reopen them.
_RESOLVED_MEMORY = 10_000


@dataclass(frozen=True)
class IncidentPolicy:
    # Signals needed within ``open_window_s`` before an incident opens.
    min_signals: int = 1
    open_window_s: float = 600.0
    # An open incident whose signal has been quiet this long is resolved.
    resolve_after_s: float = 900.0
    # Titles come from outside (alert summaries, series labels) and are listed on every page: longer ones are clipped.
    max_title_length: int = 512


def fingerprint_of(anomaly: Anomaly) -> str:
    """Signals with the same fingerprint belong to the same incident."""
    return series_fingerprint(anomaly.series)


def series_fingerprint(series: SeriesKey) -> str:
    """The fingerprint of the anomalies of ``series``."""
    return f"anomaly:{series}"


def alert_fingerprint(alert: Alert) -> str:
    return f"{ALERT_PREFIX}{alert.fingerprint}"


def incident_id(fingerprint: str, first_signal_at: float) -> str:
    # Deterministic, so replaying the same signals (after a restart or a rebalance) finds the same incident.
    digest = hashlib.sha256(f"{fingerprint}|{first_signal_at:.3f}".encode()).hexdigest()
    return f"inc-{digest[:16]}"


class IncidentManager:
    """Keeps the live incidents and the signals still waiting to open one."""

    def __init__(self, policy: IncidentPolicy) -> None:
        self._policy = policy
        self._pending: dict[str, deque[Anomaly]] = {}
        self._active: dict[str, Incident] = {}
        self._resolved_alerts: OrderedDict[tuple[str, float], None] = OrderedDict()

    def active(self) -> list[Incident]:
        return list(self._active.values())

    def observe(self, anomaly: Anomaly) -> list[IncidentChange]:
        """Account for one anomaly; returns the change it caused, if any."""
        fingerprint = fingerprint_of(anomaly)
        current = self._active.get(fingerprint)
        resolved: list[IncidentChange] = []
        if current is not None and anomaly.timestamp - current.last_signal_at >= self._policy.resolve_after_s:
            # The incident went quiet long enough before this signal: it was over, whether or not a watermark said so
            # in time (a replica that takes a partition over reads the backlog in one batch). The resolution is dated
            # when it became due, so it is the same however the records were batched.
            at = current.last_signal_at + self._policy.resolve_after_s
            del self._active[fingerprint]
            resolved = [
                IncidentChange(
                    IncidentChangeKind.RESOLVED, replace(current, state=IncidentState.RESOLVED, resolved_at=at), at
                )
            ]
            current = None
        if current is not None:
            updated = replace(
                current,
                last_signal_at=max(current.last_signal_at, anomaly.timestamp),
                signal_count=current.signal_count + 1,
                peak_score=max(current.peak_score, anomaly.score),
                severity=max(current.severity, anomaly.severity),
            )
            self._active[fingerprint] = updated
            return [IncidentChange(IncidentChangeKind.UPDATED, updated, anomaly.timestamp, anomaly)]

        pending = self._pending.setdefault(fingerprint, deque())
        pending.append(anomaly)
        while pending and anomaly.timestamp - pending[0].timestamp > self._policy.open_window_s:
            pending.popleft()
        if len(pending) < self._policy.min_signals:
            return resolved
        del self._pending[fingerprint]
        first = pending[0]
        opened = Incident(
            id=incident_id(fingerprint, first.timestamp),
            fingerprint=fingerprint,
            title=clip_text(f"Anomalous {anomaly.series.name} on {anomaly.series}", self._policy.max_title_length),
            series=anomaly.series,
            severity=max(a.severity for a in pending),
            state=IncidentState.OPEN,
            opened_at=anomaly.timestamp,
            last_signal_at=anomaly.timestamp,
            signal_count=len(pending),
            peak_score=max(a.score for a in pending),
        )
        self._active[fingerprint] = opened
        return [*resolved, IncidentChange(IncidentChangeKind.OPENED, opened, anomaly.timestamp, anomaly)]

    def observe_alert(self, alert: Alert) -> list[IncidentChange]:
        """Account for one alert notification: firing opens, resolved resolves, anything seen before is a no-op."""
        fingerprint = alert_fingerprint(alert)
        current = self._active.get(fingerprint)
        episode = (fingerprint, alert.starts_at)
        if alert.status is AlertStatus.RESOLVED:
            if current is None or current.opened_at != alert.starts_at:
                return []
            resolved_at = alert.ends_at if alert.ends_at is not None else alert.starts_at
            resolved = replace(
                current, state=IncidentState.RESOLVED, resolved_at=resolved_at, last_signal_at=resolved_at
            )
            del self._active[fingerprint]
            self._resolved_alerts[episode] = None
            if len(self._resolved_alerts) > _RESOLVED_MEMORY:
                self._resolved_alerts.popitem(last=False)
            return [IncidentChange(IncidentChangeKind.RESOLVED, resolved, resolved_at, alert=alert)]
        if current is not None or episode in self._resolved_alerts:
            # Alertmanager repeats firing alerts in every notification of their group: nothing new.
            return []
        opened = Incident(
            id=incident_id(fingerprint, alert.starts_at),
            fingerprint=fingerprint,
            title=clip_text(
                dict(alert.annotations).get("summary") or f"Alert {alert.name} firing", self._policy.max_title_length
            ),
            series=SeriesKey.of("ALERTS", {**dict(alert.labels), "alertname": alert.name}),
            severity=alert.severity,
            state=IncidentState.OPEN,
            opened_at=alert.starts_at,
            last_signal_at=alert.starts_at,
            signal_count=1,
            peak_score=1.0,
        )
        self._active[fingerprint] = opened
        return [IncidentChange(IncidentChangeKind.OPENED, opened, alert.starts_at, alert=alert)]

    def series_state(self, series: SeriesKey) -> tuple[Incident | None, tuple[Anomaly, ...]]:
        """What is kept about the anomalies of ``series``: its live incident and the signals waiting to open one."""
        fingerprint = series_fingerprint(series)
        return self._active.get(fingerprint), tuple(self._pending.get(fingerprint, ()))

    def restore_series(self, series: SeriesKey, incident: Incident | None, pending: Sequence[Anomaly]) -> None:
        """Continue ``series`` from what ``series_state`` gave (in this process or another one)."""
        self.forget_series(series)
        fingerprint = series_fingerprint(series)
        if incident is not None:
            self._active[fingerprint] = incident
        if pending:
            self._pending[fingerprint] = deque(pending)

    def forget_series(self, series: SeriesKey) -> None:
        """Drop what is kept about ``series`` (another process serves it now)."""
        fingerprint = series_fingerprint(series)
        self._active.pop(fingerprint, None)
        self._pending.pop(fingerprint, None)

    def forget(self, incident_id: str) -> None:
        """A person resolved the incident: new signals of its fingerprint open a new one."""
        self._active = {fp: incident for fp, incident in self._active.items() if incident.id != incident_id}

    def advance(
        self, now: float, stream_time: Callable[[SeriesKey], float | None] | None = None
    ) -> list[IncidentChange]:
        """Move event time to ``now``: resolve quiet incidents and forget stale pending signals. ``stream_time``
        gives, for a series, the event time its own input has been read to when that is behind ``now`` (a partition
        taken over with a backlog): its incident is judged quiet by that time, not by the rest of the input's."""
        changes: list[IncidentChange] = []
        for fingerprint, incident in list(self._active.items()):
            if fingerprint.startswith(ALERT_PREFIX):
                continue
            at = _series_time(now, stream_time, incident.series)
            if at - incident.last_signal_at >= self._policy.resolve_after_s:
                resolved = replace(incident, state=IncidentState.RESOLVED, resolved_at=at)
                del self._active[fingerprint]
                changes.append(IncidentChange(IncidentChangeKind.RESOLVED, resolved, at))
        for fingerprint, pending in list(self._pending.items()):
            if _series_time(now, stream_time, pending[-1].series) - pending[-1].timestamp > self._policy.open_window_s:
                del self._pending[fingerprint]
        return changes


def _series_time(now: float, stream_time: Callable[[SeriesKey], float | None] | None, series: SeriesKey) -> float:
    """The event time that holds for ``series``: ``now``, or where its own input has been read to if that is behind."""
    own = None if stream_time is None else stream_time(series)
    return now if own is None else min(now, own)


def holds_change(*, state: IncidentState, resolved_at: float | None, signal_count: int, change: IncidentChange) -> bool:
    """Whether a stored incident (its state, resolution time and signal count) already holds ``change``: one replayed
    from an earlier checkpoint after a crash, which must neither appear twice in the timeline nor set the figures
    back. Every signal adds one to the count, so a change whose count is reached is held; an engine's resolution is
    held when the incident was resolved at the same time (a person's resolution has a time of its own). Every
    incident store applies this one rule."""
    if change.kind is IncidentChangeKind.RESOLVED:
        return state is IncidentState.RESOLVED and resolved_at == change.incident.resolved_at
    return signal_count >= change.incident.signal_count
