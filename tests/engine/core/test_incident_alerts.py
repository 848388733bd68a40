"""Alerts as incident signals: firing opens at once, resolved resolves, redelivery changes nothing."""

from dataclasses import replace

from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.events import Alert, AlertStatus, IncidentChangeKind, IncidentState, SeriesKey, Severity
from engine.domain.limits import CLIPPED_MARKER

POLICY = IncidentPolicy(min_signals=3, open_window_s=600, resolve_after_s=60)
FIRING = Alert(
    name="ModelLatencyHigh",
    fingerprint="a1b2c3",
    status=AlertStatus.FIRING,
    labels=(("alertname", "ModelLatencyHigh"), ("model", "fraud")),
    starts_at=1000.0,
    severity=Severity.CRITICAL,
    annotations=(("summary", "p99 latency of fraud is 0.9s"),),
)
RESOLVED = replace(FIRING, status=AlertStatus.RESOLVED, ends_at=1300.0)


def test_a_firing_alert_opens_an_incident_without_waiting_for_more_signals() -> None:
    manager = IncidentManager(POLICY)
    [change] = manager.observe_alert(FIRING)
    assert change.kind is IncidentChangeKind.OPENED
    assert change.alert == FIRING
    incident = change.incident
    assert incident.fingerprint == "alert:a1b2c3"
    assert incident.series == SeriesKey.of("ALERTS", {"alertname": "ModelLatencyHigh", "model": "fraud"})
    assert incident.severity is Severity.CRITICAL
    assert incident.title == "p99 latency of fraud is 0.9s"
    assert incident.opened_at == 1000.0


def test_the_same_firing_notification_twice_changes_nothing() -> None:
    manager = IncidentManager(POLICY)
    manager.observe_alert(FIRING)
    assert manager.observe_alert(FIRING) == []
    assert len(manager.active()) == 1


def test_resolved_resolves_by_the_alert_and_only_once() -> None:
    manager = IncidentManager(POLICY)
    opened = manager.observe_alert(FIRING)[0].incident
    [change] = manager.observe_alert(RESOLVED)
    assert change.kind is IncidentChangeKind.RESOLVED
    assert change.incident.id == opened.id
    assert change.incident.state is IncidentState.RESOLVED
    assert change.incident.resolved_at == 1300.0
    assert manager.observe_alert(RESOLVED) == []
    # A late redelivery of the old firing notification must not reopen the episode.
    assert manager.observe_alert(FIRING) == []
    assert manager.active() == []


def test_a_new_episode_of_the_same_alert_opens_a_new_incident() -> None:
    manager = IncidentManager(POLICY)
    first = manager.observe_alert(FIRING)[0].incident
    manager.observe_alert(RESOLVED)
    [change] = manager.observe_alert(replace(FIRING, starts_at=2000.0))
    assert change.kind is IncidentChangeKind.OPENED
    assert change.incident.id != first.id


def test_quiet_time_does_not_resolve_an_alert_incident() -> None:
    manager = IncidentManager(POLICY)
    manager.observe_alert(FIRING)
    assert manager.advance(FIRING.starts_at + 10 * POLICY.resolve_after_s) == []
    assert len(manager.active()) == 1


def test_resolved_without_a_firing_seen_is_ignored() -> None:
    assert IncidentManager(POLICY).observe_alert(RESOLVED) == []


def test_a_huge_summary_becomes_a_clipped_title() -> None:
    manager = IncidentManager(replace(POLICY, max_title_length=100))
    huge = replace(FIRING, annotations=(("summary", "s" * 50_000_000),))
    [change] = manager.observe_alert(huge)
    assert len(change.incident.title) == 100
    assert change.incident.title.startswith("s" * 80)
    assert change.incident.title.endswith(CLIPPED_MARKER)
