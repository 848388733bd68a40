"""An incident's timeline as the on-call page tells it: one sentence per entry and per action, never JSON."""

from engine.adapters.web.sentences import MAX_COMMENT, short_names, timeline_sentences
from engine.domain.events import ActionMode, SeriesKey
from engine.domain.views import ActionRecord, TimelineEntry

T0 = 1_772_571_600.0  # 2026-03-03 21:00 UTC
PSI = SeriesKey.of("model_feature_psi", {"feature": "amount", "model": "fraud"})
ERRORS = SeriesKey.of("model_request_error_ratio", {"model": "fraud"})


def _entry(minutes: float, kind: str, **detail: object) -> TimelineEntry:
    return TimelineEntry(T0 + minutes * 60, kind, dict(detail))


def _texts(entries: list[TimelineEntry], actions: tuple[ActionRecord, ...] = ()) -> list[str]:
    return [f"{s.when} — {s.text}" for s in timeline_sentences(entries, actions, [PSI, ERRORS])]


def test_what_the_engine_saw_reads_as_sentences() -> None:
    entries = [
        _entry(
            0,
            "opened",
            state="open",
            severity="warning",
            series=str(PSI),
            value=0.270131,
            score=0.99309,
            detector="default",
            signal_at=T0,
        ),
        _entry(
            15,
            "joined",
            state="open",
            severity="warning",
            series=str(ERRORS),
            value=0.035445,
            score=0.67343,
            detector="ewma",
            signal_at=T0 + 900,
        ),
        _entry(16, "updated", state="open", severity="warning", series=str(ERRORS), value=0.03748, score=0.6915),
        _entry(30, "quieted", state="open", severity="warning", quiet=[str(PSI)]),
        _entry(46, "resolved", state="resolved", severity="warning"),
    ]
    assert _texts(entries) == [
        "2026-03-03 21:00 — model_feature_psi opened the incident (value 0.27, score 0.993, severity warning)",
        "21:15 — model_request_error_ratio joined (value 0.0354, score 0.673, detector ewma)",
        "21:16 — model_request_error_ratio still anomalous (value 0.0375, score 0.692)",
        "21:30 — model_feature_psi went quiet; other signals are still anomalous",
        "21:46 — resolved: every signal quiet",
    ]


def test_what_people_did_reads_as_sentences_with_their_words() -> None:
    entries = [
        _entry(1, "acknowledged", by="alice", comment="looking"),
        _entry(2, "commented", by="bob", comment="rollback at 21:10 did not help"),
        _entry(3, "snoozed", by="alice", comment="", until=T0 + 7200),
        _entry(4, "unacknowledged", by="alice"),
        _entry(5, "ack timed out", by="engine", comment="acknowledged 900s ago and still not resolved"),
        _entry(6, "step approved", by="carol", comment="create_job (feature-drift-retrain, step 1)"),
        _entry(7, "step rejected", by="carol", comment="rollback (bad-rollout, step 2): not now"),
        _entry(8, "resolved", by="alice", comment="fixed upstream"),
    ]
    assert _texts(entries) == [
        "2026-03-03 21:01 — alice acknowledged: “looking”",
        "21:02 — bob commented: “rollback at 21:10 did not help”",
        "21:03 — alice snoozed the incident's notifications until 2026-03-03 23:00 UTC",
        "21:04 — alice took back the acknowledgement",
        "21:05 — engine re-opened the incident: its acknowledgement timed out: “acknowledged 900s ago and still not"
        " resolved”",
        "21:06 — carol approved the step create_job (feature-drift-retrain, step 1)",
        "21:07 — carol rejected the step rollback (bad-rollout, step 2): not now",
        "21:08 — alice resolved the incident: “fixed upstream”",
    ]
    sources = [s.source for s in timeline_sentences(entries)]
    assert sources == ["person"] * 4 + ["engine"] + ["person"] * 3


def test_alerts_and_actions_read_as_sentences_in_time_order() -> None:
    entries = [
        _entry(0, "opened", state="open", severity="critical", alert="HighErrorRate", alert_status="firing"),
        _entry(40, "resolved", state="resolved", severity="critical", alert="HighErrorRate", alert_status="resolved"),
    ]
    action = ActionRecord(
        id="act-1", incident_id="inc-1", playbook="bad-rollout", step=0, action="rollout_undo", params={},
        mode=ActionMode.DRY_RUN, status="dry-run", detail="would undo", requested_at=T0 + 60,
        finished_at=T0 + 120, decided_by="alice",
    )  # fmt: skip
    assert _texts(entries, (action,)) == [
        "2026-03-03 21:00 — alert HighErrorRate opened the incident (firing)",
        "21:01 — playbook bad-rollout asked for step 1, rollout_undo (dry-run)",
        "21:02 — step 1 of bad-rollout, rollout_undo: dry-run by alice",
        "21:40 — resolved: alert HighErrorRate resolved",
    ]


def test_a_new_day_shows_its_date_and_an_unknown_kind_shows_its_plain_values() -> None:
    entries = [
        _entry(0, "commented", by="a", comment="x"),
        _entry(24 * 60, "escalated", level=2, target="team-lead", nested={"not": "shown"}),
    ]
    assert _texts(entries) == [
        "2026-03-03 21:00 — a commented: “x”",
        "2026-03-04 21:00 — escalated (level 2, target team-lead)",
    ]


def test_long_comments_are_cut_and_nothing_is_json() -> None:
    text = timeline_sentences([_entry(0, "commented", by="a", comment="y" * 5000)])[0].text
    assert len(text) < MAX_COMMENT + 40
    assert text.endswith("…”")
    opened = _entry(0, "opened", state="open", severity="warning", series=str(PSI), value=1.0, score=0.9)
    assert not any("{" in s.text for s in timeline_sentences([opened], (), [PSI]))


def test_a_series_is_named_by_its_metric_unless_two_signals_share_it() -> None:
    fraud = SeriesKey.of("latency", {"model": "fraud"})
    recsys = SeriesKey.of("latency", {"model": "recsys"})
    alert = SeriesKey.of("ALERTS", {"alertname": "HighLatency"})
    assert short_names([fraud, recsys, PSI, alert]) == {
        str(fraud): str(fraud),
        str(recsys): str(recsys),
        str(PSI): "model_feature_psi",
        str(alert): "HighLatency",
    }
