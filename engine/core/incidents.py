"""Turns anomalies into incidents: deduplication by fingerprint, a minimum of signals before opening (so a single
noisy point does not page anyone), and automatic resolution once the signals have been quiet long enough.

A fingerprint is a series, or, when correlation rules (``engine.core.correlation``) put the series in a group, the
group: the related series of one workload share one incident, each with its own signal (first anomaly, peak,
latest), and the incident stays open while any of its signals is anomalous. With several replicas, each holds the
signals of the series it reads; the store merges them (``engine.core.incident_merge``), so the group, not the
process, decides the incident.

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

from engine.core.correlation import ALERTS_METRIC, GROUP_PREFIX, NO_RULES, CorrelationRules
from engine.domain.events import (
    Alert,
    AlertStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
    Severity,
    Signal,
)
from engine.domain.limits import clip_text

ALERT_PREFIX = "alert:"
# The signals an incident lists (one per series): past that, more series of its group still count in its figures
# and keep it open, but are not listed (a group of a thousand pods is one problem, not a thousand lines).
MAX_SIGNALS = 100
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
    """Keeps the live incidents (what this process knows of them: the signals of the series it reads) and the
    signals still waiting to open or join one. Signals are grouped by fingerprint: a series, an alert, or the group
    that correlation rules give a series."""

    def __init__(self, policy: IncidentPolicy, rules: CorrelationRules = NO_RULES) -> None:
        self._policy = policy
        self._rules = rules
        self._pending: dict[SeriesKey, deque[Anomaly]] = {}
        self._active: dict[str, Incident] = {}
        self._resolved_alerts: OrderedDict[tuple[str, float], None] = OrderedDict()

    @property
    def rules(self) -> CorrelationRules:
        return self._rules

    def replace_rules(self, rules: CorrelationRules) -> None:
        """Group new signals by ``rules`` from now on; incidents already open keep the signals they have."""
        self._rules = rules

    def active(self) -> list[Incident]:
        return list(self._active.values())

    def fingerprint(self, series: SeriesKey) -> str:
        """The fingerprint of the incident the anomalies of ``series`` belong to."""
        return self._rules.group_of(series) or series_fingerprint(series)

    def _resolve_after(self, fingerprint: str) -> float:
        if fingerprint.startswith(GROUP_PREFIX):
            return self._rules.resolve_after(self._policy.resolve_after_s)
        return self._policy.resolve_after_s

    def observe(self, anomaly: Anomaly) -> list[IncidentChange]:
        """Account for one anomaly; returns the changes it caused, if any."""
        series = anomaly.series
        fingerprint = self.fingerprint(series)
        resolve_after = self._resolve_after(fingerprint)
        current = self._active.get(fingerprint)
        resolved: list[IncidentChange] = []
        if (
            current is not None
            and anomaly.timestamp - current.last_signal_at >= resolve_after
            and not any(signal.active and signal.alert for signal in current.signals)
        ):
            # The incident went quiet long enough before this signal: it was over, whether or not a watermark said so
            # in time (a replica that takes a partition over reads the backlog in one batch). The resolution is dated
            # when it became due, so it is the same however the records were batched.
            at = current.last_signal_at + resolve_after
            del self._active[fingerprint]
            signals = tuple(s if not s.active or s.alert else replace(s, quiet_at=at) for s in current.signals)
            closed = replace(current, state=IncidentState.RESOLVED, resolved_at=at, signals=signals)
            resolved = [IncidentChange(IncidentChangeKind.RESOLVED, closed, at)]
            current = None
        if current is not None:
            signal = current.signal_of(series)
            if signal is not None or len(current.signals) >= MAX_SIGNALS:
                updated = _with_signal(
                    current,
                    None if signal is None else _extended(signal, anomaly),
                    1,
                    at=anomaly.timestamp,
                    score=anomaly.score,
                    severity=anomaly.severity,
                )
                self._active[fingerprint] = updated
                return [*resolved, IncidentChange(IncidentChangeKind.UPDATED, updated, anomaly.timestamp, anomaly)]

        pending = self._pending.setdefault(series, deque())
        pending.append(anomaly)
        while pending and anomaly.timestamp - pending[0].timestamp > self._policy.open_window_s:
            pending.popleft()
        if len(pending) < self._policy.min_signals:
            return resolved
        del self._pending[series]
        first = pending[0]
        peak = max(pending, key=lambda a: a.score)
        signal = Signal(
            series=series,
            first_at=first.timestamp,
            last_at=anomaly.timestamp,
            peak_at=peak.timestamp,
            peak_value=peak.value,
            peak_score=peak.score,
            count=len(pending),
            severity=max(a.severity for a in pending),
        )
        if current is not None:
            joined = _with_signal(
                current, signal, len(pending), at=anomaly.timestamp, score=signal.peak_score, severity=signal.severity
            )
            self._active[fingerprint] = joined
            return [*resolved, IncidentChange(IncidentChangeKind.JOINED, joined, anomaly.timestamp, anomaly)]
        opened = Incident(
            id=incident_id(fingerprint, first.timestamp),
            fingerprint=fingerprint,
            title=clip_text(f"Anomalous {series.name} on {series}", self._policy.max_title_length),
            series=series,
            severity=signal.severity,
            state=IncidentState.OPEN,
            opened_at=anomaly.timestamp,
            last_signal_at=anomaly.timestamp,
            signal_count=len(pending),
            peak_score=signal.peak_score,
            signals=(signal,),
        )
        self._active[fingerprint] = opened
        return [*resolved, IncidentChange(IncidentChangeKind.OPENED, opened, anomaly.timestamp, anomaly)]

    def observe_alert(self, alert: Alert) -> list[IncidentChange]:
        """Account for one alert notification: firing opens (or joins its group's incident), resolved makes its
        signal quiet (and resolves the incident if no other signal is anomalous), anything seen before is a
        no-op."""
        series = SeriesKey.of(ALERTS_METRIC, {**dict(alert.labels), "alertname": alert.name})
        fingerprint = self._rules.group_of(series) or alert_fingerprint(alert)
        current = self._active.get(fingerprint)
        signal = None if current is None else current.signal_of(series)
        episode = (alert_fingerprint(alert), alert.starts_at)
        if alert.status is AlertStatus.RESOLVED:
            if current is None or signal is None or not signal.active or signal.first_at != alert.starts_at:
                return []
            resolved_at = alert.ends_at if alert.ends_at is not None else alert.starts_at
            self._resolved_alerts[episode] = None
            if len(self._resolved_alerts) > _RESOLVED_MEMORY:
                self._resolved_alerts.popitem(last=False)
            quieted = _replace_signal(current, replace(signal, quiet_at=resolved_at, last_at=resolved_at))
            if any(other.active for other in quieted.signals):
                self._active[fingerprint] = quieted
                return [IncidentChange(IncidentChangeKind.QUIETED, quieted, resolved_at, alert=alert)]
            resolved = replace(
                quieted,
                state=IncidentState.RESOLVED,
                resolved_at=resolved_at,
                last_signal_at=max(resolved_at, current.last_signal_at),
            )
            del self._active[fingerprint]
            return [IncidentChange(IncidentChangeKind.RESOLVED, resolved, resolved_at, alert=alert)]
        if (signal is not None and signal.active) or episode in self._resolved_alerts:
            # Alertmanager repeats firing alerts in every notification of their group: nothing new.
            return []
        fired = Signal(
            series=series,
            first_at=alert.starts_at,
            last_at=alert.starts_at,
            peak_at=alert.starts_at,
            peak_value=1.0,
            peak_score=1.0,
            count=1,
            severity=alert.severity,
            alert=True,
        )
        if current is not None:
            kind = IncidentChangeKind.JOINED if signal is None else IncidentChangeKind.UPDATED
            joined = _with_signal(current, fired, 1, at=alert.starts_at, score=1.0, severity=alert.severity)
            self._active[fingerprint] = joined
            return [IncidentChange(kind, joined, alert.starts_at, alert=alert)]
        opened = Incident(
            id=incident_id(fingerprint, alert.starts_at),
            fingerprint=fingerprint,
            title=clip_text(
                dict(alert.annotations).get("summary") or f"Alert {alert.name} firing", self._policy.max_title_length
            ),
            series=series,
            severity=alert.severity,
            state=IncidentState.OPEN,
            opened_at=alert.starts_at,
            last_signal_at=alert.starts_at,
            signal_count=1,
            peak_score=1.0,
            signals=(fired,),
        )
        self._active[fingerprint] = opened
        return [IncidentChange(IncidentChangeKind.OPENED, opened, alert.starts_at, alert=alert)]

    def adopt(self, stored: Sequence[IncidentChange]) -> None:
        """Follow what the store made of this process' changes (``IncidentStore.apply_changes``): an incident this
        process opened for a group that another replica had opened first is that one, so its later signals go
        there; one whose resolution the store refused (another replica's signals are still anomalous) stays
        forgotten here, and this process' next signal of the group joins it again."""
        for change in stored:
            incident = change.incident
            local = self._active.get(incident.fingerprint)
            if local is None or local.id == incident.id or change.kind is IncidentChangeKind.RESOLVED:
                continue
            own = {signal.series for signal in local.signals}
            self._active[incident.fingerprint] = replace(
                incident,
                signals=tuple(signal for signal in incident.signals if signal.series in own) or local.signals,
            )

    def series_state(self, series: SeriesKey) -> tuple[Incident | None, tuple[Anomaly, ...]]:
        """What is kept about the anomalies of ``series``: its live incident (when the series has a signal in it)
        and the signals waiting to open or join one."""
        incident = self._active.get(self.fingerprint(series))
        if incident is not None and incident.signal_of(series) is None:
            incident = None
        return incident, tuple(self._pending.get(series, ()))

    def restore_series(self, series: SeriesKey, incident: Incident | None, pending: Sequence[Anomaly]) -> None:
        """Continue ``series`` from what ``series_state`` gave (in this process or another one). Only the series'
        own signal is taken from ``incident``: the other series of its group restore theirs."""
        self.forget_series(series)
        if incident is not None:
            own = incident.signal_of(series)
            current = self._active.get(incident.fingerprint)
            if current is not None and current.id == incident.id and own is not None:
                self._active[incident.fingerprint] = _replace_signal(current, own)
            elif current is None or current.opened_at < incident.opened_at:
                self._active[incident.fingerprint] = replace(incident, signals=() if own is None else (own,))
        if pending:
            self._pending[series] = deque(pending)

    def forget_series(self, series: SeriesKey) -> None:
        """Drop what is kept about ``series`` (another process serves it now)."""
        self._pending.pop(series, None)
        fingerprint = self.fingerprint(series)
        incident = self._active.get(fingerprint)
        if incident is None or incident.signal_of(series) is None:
            return
        signals = tuple(signal for signal in incident.signals if signal.series != series)
        if signals:
            self._active[fingerprint] = replace(incident, signals=signals)
        else:
            del self._active[fingerprint]

    def forget(self, incident_id: str) -> None:
        """A person resolved the incident: new signals of its fingerprint open a new one."""
        self._active = {fp: incident for fp, incident in self._active.items() if incident.id != incident_id}

    def advance(
        self, now: float, stream_time: Callable[[SeriesKey], float | None] | None = None
    ) -> list[IncidentChange]:
        """Move event time to ``now``: quiet the signals that have been normal long enough, resolve the incidents
        whose signals are all quiet, and forget stale pending signals. ``stream_time`` gives, for a series, the
        event time its own input has been read to when that is behind ``now`` (a partition taken over with a
        backlog): its signal is judged quiet by that time, not by the rest of the input's."""
        changes: list[IncidentChange] = []
        for fingerprint, incident in list(self._active.items()):
            resolve_after = self._resolve_after(fingerprint)
            if not any(signal.active and not signal.alert for signal in incident.signals):
                continue  # only alerts (resolved by their notifications), or nothing left to quiet
            quieted = []
            signals = []
            for signal in incident.signals:
                at = _series_time(now, stream_time, signal.series)
                if signal.active and not signal.alert and at - signal.last_at >= resolve_after:
                    quieted.append(replace(signal, quiet_at=at))
                    signals.append(quieted[-1])
                else:
                    signals.append(signal)
            if not quieted:
                continue
            changed = replace(incident, signals=tuple(signals))
            at = max(signal.quiet_at for signal in quieted if signal.quiet_at is not None)
            # Series past MAX_SIGNALS have no signal of their own: the incident's latest signal stands for them.
            if any(signal.active for signal in signals) or now - incident.last_signal_at < resolve_after:
                self._active[fingerprint] = changed
                changes.append(IncidentChange(IncidentChangeKind.QUIETED, changed, at))
                continue
            resolved = replace(changed, state=IncidentState.RESOLVED, resolved_at=at)
            del self._active[fingerprint]
            changes.append(IncidentChange(IncidentChangeKind.RESOLVED, resolved, at))
        for series, pending in list(self._pending.items()):
            if _series_time(now, stream_time, series) - pending[-1].timestamp > self._policy.open_window_s:
                del self._pending[series]
        return changes


def _extended(signal: Signal, anomaly: Anomaly) -> Signal:
    """``signal`` with one more anomaly of its series (active again if it had gone quiet)."""
    stronger = anomaly.score > signal.peak_score
    return replace(
        signal,
        last_at=max(signal.last_at, anomaly.timestamp),
        peak_at=anomaly.timestamp if stronger else signal.peak_at,
        peak_value=anomaly.value if stronger else signal.peak_value,
        peak_score=anomaly.score if stronger else signal.peak_score,
        count=signal.count + 1,
        severity=max(signal.severity, anomaly.severity),
        quiet_at=None,
    )


def _replace_signal(incident: Incident, signal: Signal) -> Incident:
    """``incident`` with ``signal`` in place of its series' signal (or added)."""
    kept = [s for s in incident.signals if s.series != signal.series]
    return replace(incident, signals=(*kept, signal))


def _with_signal(
    incident: Incident, signal: Signal | None, added: int, *, at: float, score: float, severity: Severity
) -> Incident:
    """``incident`` with a new or extended ``signal`` (None: a series past MAX_SIGNALS, counted only) and the
    figures its ``added`` anomalies (or alert) at ``at`` change."""
    changed = incident if signal is None else _replace_signal(incident, signal)
    return replace(
        changed,
        last_signal_at=max(incident.last_signal_at, at),
        signal_count=incident.signal_count + added,
        peak_score=max(incident.peak_score, score),
        severity=max(incident.severity, severity),
    )


def _series_time(now: float, stream_time: Callable[[SeriesKey], float | None] | None, series: SeriesKey) -> float:
    """The event time that holds for ``series``: ``now``, or where its own input has been read to if that is behind."""
    own = None if stream_time is None else stream_time(series)
    return now if own is None else min(now, own)
