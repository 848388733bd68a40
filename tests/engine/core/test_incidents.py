from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.events import IncidentChangeKind, IncidentState, SeriesKey, Severity
from engine.domain.limits import CLIPPED_MARKER
from tests.engine.factories import anomaly

POLICY = IncidentPolicy(min_signals=2, open_window_s=600, resolve_after_s=900)


def test_single_signal_does_not_open_an_incident() -> None:
    manager = IncidentManager(POLICY)
    assert manager.observe(anomaly(0)) == []
    assert manager.active() == []


def test_second_signal_within_window_opens_one_incident() -> None:
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    changes = manager.observe(anomaly(60))
    assert [c.kind for c in changes] == [IncidentChangeKind.OPENED]
    assert changes[0].incident.signal_count == 2
    assert changes[0].incident.opened_at == 60


def test_signals_too_far_apart_do_not_open() -> None:
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    assert manager.observe(anomaly(601)) == []


def test_later_signals_update_the_same_incident() -> None:
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    opened = manager.observe(anomaly(60))[0].incident
    update = manager.observe(anomaly(120, score=0.9999, severity=Severity.CRITICAL))[0]
    assert update.kind is IncidentChangeKind.UPDATED
    assert update.incident.id == opened.id
    assert update.incident.signal_count == 3
    assert update.incident.severity is Severity.CRITICAL
    assert len(manager.active()) == 1


def test_other_series_get_their_own_incident() -> None:
    manager = IncidentManager(POLICY)
    other = SeriesKey.of("gpu_memory_used_ratio", {"gpu": "0"})
    for at in (0, 60):
        manager.observe(anomaly(at))
        manager.observe(anomaly(at, series=other))
    assert len(manager.active()) == 2


def test_quiet_incident_resolves_after_the_policy_delay() -> None:
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    manager.observe(anomaly(60))
    assert manager.advance(60 + 899) == []
    resolved = manager.advance(60 + 900)
    assert [c.kind for c in resolved] == [IncidentChangeKind.RESOLVED]
    assert resolved[0].incident.state is IncidentState.RESOLVED
    assert manager.active() == []


def test_incident_ids_are_deterministic_across_replays() -> None:
    def run() -> str:
        manager = IncidentManager(POLICY)
        manager.observe(anomaly(0))
        return manager.observe(anomaly(60))[0].incident.id

    assert run() == run()


def test_the_title_of_a_series_with_long_labels_is_clipped() -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1))
    series = SeriesKey.of("latency_seconds", {f"label_{n}": "v" * 1024 for n in range(64)})
    [change] = manager.observe(anomaly(0, series=series))
    assert len(change.incident.title) == IncidentPolicy().max_title_length
    assert change.incident.title.startswith("Anomalous latency_seconds on latency_seconds{label_0=")
    assert change.incident.title.endswith(CLIPPED_MARKER)


def test_a_signal_after_the_quiet_time_opens_a_new_incident_even_without_a_watermark_in_between() -> None:
    # A replica catching up on a backlog reads it in one batch: no advance() falls between the two episodes.
    manager = IncidentManager(POLICY)
    first = [c for t in (0.0, 60.0) for c in manager.observe(anomaly(t))]
    assert [c.kind for c in first] == [IncidentChangeKind.OPENED]
    later = [c for t in (2000.0, 2060.0) for c in manager.observe(anomaly(t))]
    assert [c.kind for c in later] == [IncidentChangeKind.RESOLVED, IncidentChangeKind.OPENED]
    resolved, opened = later
    assert resolved.incident.id == first[0].incident.id
    assert resolved.incident.resolved_at == resolved.at == 60.0 + POLICY.resolve_after_s
    assert opened.incident.id != first[0].incident.id
    assert opened.incident.signal_count == 2


def test_an_incident_whose_own_input_is_behind_is_judged_by_that_input_not_by_the_watermark() -> None:
    # A replica that takes a partition over restores its live incident while the partition's backlog is unread;
    # the rest of its input is far ahead. The incident's signals may still be in the backlog.
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    opened = manager.observe(anomaly(60))[0].incident
    other = SeriesKey.of("gpu_memory_used_ratio", {"gpu": "0"})
    behind = {opened.series: 100.0}
    assert manager.advance(5000, behind.get) == []
    [update] = manager.observe(anomaly(160))
    assert update.kind is IncidentChangeKind.UPDATED
    assert update.incident.id == opened.id
    # Read to 1059: not yet 900 s quiet; to 1060: quiet, and resolved as of then, not as of the watermark.
    assert manager.advance(5000, {opened.series: 1059.0}.get) == []
    [resolved] = manager.advance(5000, {opened.series: 1060.0, other: 0.0}.get)
    assert resolved.kind is IncidentChangeKind.RESOLVED
    assert resolved.at == resolved.incident.resolved_at == 1060.0


def test_an_incident_whose_input_holds_nothing_unread_follows_the_watermark() -> None:
    manager = IncidentManager(POLICY)
    manager.observe(anomaly(0))
    manager.observe(anomaly(60))
    caught_up: dict[SeriesKey, float] = {}
    [resolved] = manager.advance(5000, caught_up.get)
    assert resolved.at == 5000


def test_pending_signals_expire_by_their_series_own_input_time() -> None:
    manager = IncidentManager(POLICY)
    first = anomaly(0)
    manager.observe(first)
    manager.advance(5000, {first.series: 100.0}.get)
    # The pending signal was kept: the next one within the window opens the incident.
    assert [c.kind for c in manager.observe(anomaly(300))] == [IncidentChangeKind.OPENED]
