"""Signal silences: detections on a silenced series open no incident while the silence lasts; others still do."""

from __future__ import annotations

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.app.summary import RunSummary
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.silences import SignalSilence, SilenceBook, SilenceDesk
from engine.domain.clock import FakeClock
from engine.domain.events import MetricSample, SeriesKey
from tests.engine.core.remediating import remediator
from tests.engine.core.test_pipeline import HOT, AboveTen, ListSource

HOT_RANKER = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "ranker"})


def _silence(metric: str | None = None, *matchers: str, ends_at: float = 3600.0) -> SignalSilence:
    return SignalSilence("sil-1", metric, matchers, 0.0, ends_at, "alice", "maintenance")


@pytest.mark.parametrize(
    ("silence", "covered"),
    [
        (_silence("gpu_memory_used_ratio"), True),
        (_silence(None, 'deployment="fraud"'), True),
        (_silence("gpu_memory_used_ratio", 'deployment=~"fr.*"', 'namespace!="batch"'), True),
        (_silence("gpu_memory_used_ratio", 'deployment="ranker"'), False),
        (_silence("model_request_latency_p99_seconds"), False),
        (_silence("gpu_memory_used_ratio", ends_at=10.0), False),
    ],
)
def test_a_silence_covers_matching_series_while_it_lasts(silence: SignalSilence, covered: bool) -> None:
    assert silence.covers(HOT, at=60.0) is covered


async def test_silenced_signals_open_no_incident_and_others_still_do() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    clock = FakeClock(0.0)
    book = SilenceBook(clock)
    desk = SilenceDesk(store, book, clock)
    await desk.silence(metric=None, matchers=['deployment="fraud"'], duration_s=3600.0, by="alice", comment="deploy")
    batches = [
        [
            MetricSample(HOT, minute * 60.0, 100.0 if 20 <= minute < 25 else 1.0),
            MetricSample(HOT_RANKER, minute * 60.0, 100.0 if 30 <= minute < 35 else 1.0),
        ]
        for minute in range(60)
    ]
    summary = RunSummary()
    pipeline = Pipeline(
        source=ListSource(batches),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=1, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [], clock=clock),
        store=store,
        observer=summary,
        silences=book,
    )
    await pipeline.run()
    assert summary.anomalies == 10  # detection still sees everything ...
    assert [incident.series for incident in await store.list_incidents()] == [HOT_RANKER]  # ... but fraud is silenced
    assert [s.comment for s in await store.active_silences(at=0.0)] == ["deploy"]
    await store.close()


async def test_ending_a_silence_is_stored_and_other_replicas_follow_on_refresh() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    clock = FakeClock(0.0)
    mine, theirs = SilenceBook(clock), SilenceBook(clock)
    desk, other_desk = SilenceDesk(store, mine, clock), SilenceDesk(store, theirs, clock)
    silence = await desk.silence(metric="gpu_memory_used_ratio", matchers=[], duration_s=600, by="a", comment="x")
    await other_desk.refresh()
    assert theirs.silencing(HOT) == silence
    await desk.end(silence.id)
    await other_desk.refresh()
    assert theirs.silencing(HOT) is None
    with pytest.raises(ValueError, match="invalid matcher"):
        await desk.silence(metric=None, matchers=["deployment"], duration_s=60, by="a", comment="x")
    await store.close()


def test_a_silence_whose_matchers_do_not_parse_is_left_out_and_the_others_still_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Written to the store by hand, or by a version that read matchers differently: detection must go on.
    unreadable = SignalSilence("sil-bad", None, ('deployment=~"fraud\\.v2"',), 0.0, 3600.0, "alice", "old")
    book = SilenceBook(FakeClock(start=60.0), [unreadable])
    book.put(unreadable)
    book.replace([unreadable, _silence(None, 'deployment="fraud"')])
    assert [silence.id for silence in book.active()] == ["sil-1"]
    assert book.silencing(HOT) is not None
    assert "silence sil-bad is ignored" in caplog.text
