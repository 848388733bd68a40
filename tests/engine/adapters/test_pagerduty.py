"""PagerDuty paging end to end: the engine as the composition root wires it (settings, store, ledger, executor,
the PagerDuty backend) against a stand-in for the Events API v2 on loopback (``tests.support.pagerduty_stub``),
which refuses what PagerDuty refuses and merges what PagerDuty merges.

Time is fake and skips ahead when the executor backs off, so retries take no wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from engine.adapters.actions.pagerduty import RoutingKeys
from engine.adapters.actions.pagerduty_changes import PagerDutyChanges
from engine.app.bootstrap import SharedParts, open_shared_parts
from engine.app.settings import Settings, load_settings
from engine.core.actions.catalogue import parse_params
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.paging import event_id
from engine.core.pipeline import Pipeline
from engine.domain.clock import FakeClock
from engine.domain.errors import ConfigurationError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    MetricSample,
    SeriesKey,
    Severity,
)
from tests.engine.core.test_pipeline import AboveTen, ListSource
from tests.engine.factories import incident as make_incident
from tests.support.pagerduty_stub import PagerDutyStub

ROUTING_KEY = "a1b2c3d4" * 4
OTHER_KEY = "f9e8d7c6" * 4
NOW = 1_750_000_000.0
SERIES = SeriesKey.of(
    "model_request_latency_p99_seconds",
    {"model": "fraud-detector", "namespace": "serving", "instance": "10.0.0.7:8080"},
)


class SkippingClock(FakeClock):
    """Fake time that moves by itself when someone sleeps (the executor's backoff)."""

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStub]:
    stub = PagerDutyStub()
    yield stub
    stub.close()


def engine_settings(database_url: str, tmp_path: Path, stub: PagerDutyStub, **overrides: Any) -> Settings:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "database_url": database_url,
        "playbook_dir": playbooks,
        "mode": "live",
        "pagerduty_routing_key": ROUTING_KEY,
        "pagerduty_url": stub.url,
        "public_url": "https://aiops.example.com",
        "action_timeout_s": 5.0,
    }
    return load_settings({}, **(values | overrides))


@pytest.fixture
async def opened() -> AsyncIterator[list[SharedParts]]:
    """Engines opened by a test (replicas, restarts), closed at its end."""
    parts: list[SharedParts] = []
    yield parts
    for part in parts:
        await part.backends.aclose()
        await part.store.close()


async def open_engine(settings: Settings, opened: list[SharedParts], clock: FakeClock | None = None) -> SharedParts:
    parts = await open_shared_parts(settings, clock=clock or SkippingClock(NOW), summary=None)
    opened.append(parts)
    return parts


def opened_change(incident_id: str = "inc-1", *, severity: Severity = Severity.CRITICAL) -> IncidentChange:
    incident = make_incident(id=incident_id, series=SERIES, severity=severity, opened_at=NOW)
    return IncidentChange(IncidentChangeKind.OPENED, incident, NOW)


async def store_change(parts: SharedParts, change: IncidentChange) -> None:
    """What the pipeline's incident stage does with a change: store it with the steps it calls for."""
    assert parts.pager is not None
    await parts.store.apply_changes([change], [*parts.remediator.plan(change), *parts.pager.for_change(change)])


async def drain(parts: SharedParts) -> list[ActionResult]:
    results: list[ActionResult] = []
    while batch := await parts.remediator.run_due(1):
        results += batch
    return results


# --- the lifecycle ------------------------------------------------------------------------------------------


async def test_open_acknowledge_resolve_is_one_alert_triggered_acknowledged_and_resolved(
    database_url: str, tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    await store_change(parts, opened_change())
    await drain(parts)
    await parts.desk.acknowledge("inc-1", by="alice")
    await drain(parts)
    await parts.desk.resolve("inc-1", by="alice")
    results = await drain(parts)

    assert [event["event_action"] for event in pagerduty.events()] == ["trigger", "acknowledge", "resolve"]
    assert {event["dedup_key"] for event in pagerduty.events()} == {"inc-1"}
    assert {event["routing_key"] for event in pagerduty.events()} == {ROUTING_KEY}
    assert pagerduty.alert("inc-1").status == "resolved"
    assert pagerduty.ignored == []
    assert [result.status for result in results] == [ActionStatus.SUCCEEDED]
    trigger = pagerduty.events("trigger")[0]
    assert trigger["payload"] == {
        "summary": "t",
        "source": "10.0.0.7:8080",
        "severity": "critical",
        "component": "fraud-detector",
        "group": "serving",
        "class": "model_request_latency_p99_seconds",
        "timestamp": "2025-06-15T15:06:40+00:00",
        "custom_details": {
            "incident_id": "inc-1",
            "series": str(SERIES),
            "severity": "critical",
            "signal_count": 2,
            "peak_score": 0.99,
            "labels": SERIES.label_map,
        },
    }
    link = {"href": "https://aiops.example.com/ui/incidents/inc-1", "text": "Incident in aiops-engine"}
    assert trigger["links"] == [link]
    # Every event is in the incident's audit trail like any other action.
    detail = await parts.store.get_incident("inc-1")
    assert [(record.action, record.status) for record in detail.actions] == [("pagerduty_event", "succeeded")] * 3


async def test_an_incident_the_pipeline_opens_and_resolves_pages_and_resolves(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    hot = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "fraud"})
    batches = [[MetricSample(hot, NOW + minute * 60.0, 100.0 if 20 <= minute < 25 else 1.0)] for minute in range(60)]
    pipeline = Pipeline(
        source=ListSource(batches),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=parts.remediator,
        store=parts.store,
        observer=parts.summary,
        pager=parts.pager,
    )
    await pipeline.run()

    [incident] = await parts.store.list_incidents()
    assert incident.state is IncidentState.RESOLVED
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events()] == [
        ("trigger", incident.id),
        ("resolve", incident.id),
    ]
    assert pagerduty.events("trigger")[0]["payload"]["severity"] == incident.severity.label


async def test_events_decided_before_the_trigger_went_out_follow_it_in_order(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    await store_change(parts, opened_change())
    await parts.desk.acknowledge("inc-1", by="alice")
    await parts.desk.resolve("inc-1", by="alice")
    # Four workers at once: the ledger still hands out one event of the incident at a time, in lifecycle order.
    while await parts.remediator.run_due(4):
        pass
    assert [event["event_action"] for event in pagerduty.events()] == ["trigger", "acknowledge", "resolve"]


async def test_unacknowledging_sends_nothing_and_a_second_acknowledgement_nothing_more(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    await store_change(parts, opened_change())
    await parts.desk.acknowledge("inc-1", by="alice")
    await parts.desk.unacknowledge("inc-1", by="alice")
    await parts.desk.acknowledge("inc-1", by="bob")
    await drain(parts)
    assert [event["event_action"] for event in pagerduty.events()] == ["trigger", "acknowledge"]


async def test_no_acknowledge_or_resolve_is_sent_for_an_incident_pagerduty_never_heard_of(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    # Opened while no routing key was configured: stored without a trigger step.
    await parts.store.apply_changes([opened_change()])
    await parts.desk.acknowledge("inc-1", by="alice")
    await parts.desk.resolve("inc-1", by="alice")
    results = await drain(parts)
    assert pagerduty.requests == []
    assert pagerduty.ignored == []
    assert [result.status for result in results] == [ActionStatus.SUCCEEDED, ActionStatus.SUCCEEDED]
    assert all(result.detail.startswith("nothing sent: PagerDuty has no alert for inc-1") for result in results)


async def test_dry_run_records_the_event_and_sends_none(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty, mode="dry-run"), opened)
    await store_change(parts, opened_change())
    [result] = await drain(parts)
    assert result.status is ActionStatus.DRY_RUN
    assert result.detail == "would send a PagerDuty trigger event for inc-1 (critical): t"
    assert pagerduty.requests == []


async def test_without_a_routing_key_nothing_is_planned(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty, pagerduty_routing_key=""), opened)
    assert parts.pager is None
    assert "pagerduty_event" not in parts.backends.by_action


# --- restarts and replicas ----------------------------------------------------------------------------------


async def test_a_restart_neither_resends_nor_loses_an_event(
    database_url: str, tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    settings = engine_settings(database_url, tmp_path, pagerduty, replica_id="replica-a")
    first = await open_engine(settings, opened)
    await store_change(first, opened_change("inc-1"))
    await drain(first)
    # Stored with the change, not sent yet when the engine stops (killed before its workers got to it).
    await store_change(first, opened_change("inc-2"))
    await first.desk.acknowledge("inc-1", by="alice")
    await first.backends.aclose()
    await first.store.close()
    opened.remove(first)

    again = await open_engine(settings, opened)
    await again.remediator.recover()
    await store_change(again, opened_change("inc-1"))  # the same input processed again after the restart
    await drain(again)
    assert sorted((e["event_action"], e["dedup_key"]) for e in pagerduty.events()) == [
        ("acknowledge", "inc-1"),
        ("trigger", "inc-1"),
        ("trigger", "inc-2"),
    ]


async def test_two_replicas_seeing_one_change_send_one_trigger(
    database_url: str, tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    replicas = [
        await open_engine(engine_settings(database_url, tmp_path, pagerduty, replica_id=name), opened)
        for name in ("replica-a", "replica-b")
    ]
    for replica in replicas:
        await store_change(replica, opened_change())
    for replica in replicas:
        await drain(replica)
    assert len(pagerduty.events("trigger")) == 1


async def test_a_trigger_sent_again_after_a_crash_mid_call_is_merged_by_pagerduty(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    await store_change(parts, opened_change())
    await drain(parts)
    assert await parts.executor.claim_due(10) == []  # the ledger knows the trigger went out: nothing to resend
    # A worker that died after PagerDuty took its POST but before the ledger heard of it leaves the step running;
    # whoever takes it over asks the backend whether it was applied (PagerDuty cannot tell: no) and sends again.
    step = await parts.store.ledger.load(event_id("inc-1", "trigger"))
    assert step is not None
    backend = parts.backends.by_action["pagerduty_event"]
    params = parse_params(step.request.action, step.request.params)
    assert not await backend.applied(params, step.request)
    await backend.execute(params, step.request)
    assert len(pagerduty.events("trigger")) == 2
    assert len(pagerduty.alerts) == 1
    assert len(pagerduty.alert("inc-1").events) == 2


# --- failures -----------------------------------------------------------------------------------------------


async def test_429_and_5xx_are_retried_with_backoff(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    clock = SkippingClock(NOW)
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty, action_attempts=3), opened, clock)
    pagerduty.fail_next(429)
    pagerduty.fail_next(503)
    await store_change(parts, opened_change())
    [result] = await drain(parts)
    assert result.status is ActionStatus.SUCCEEDED
    assert [request["status"] for request in pagerduty.requests] == [429, 503, 202]
    assert clock.now() - NOW >= 1.0 + 2.0  # the executor's exponential backoff, 1 s then 2 s


async def test_pagerduty_down_longer_than_the_attempts_fails_the_step_for_a_human(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty, action_attempts=2), opened)
    pagerduty.fail_next(500, times=2)
    await store_change(parts, opened_change())
    [result] = await drain(parts)
    assert result.status is ActionStatus.FAILED
    assert "HTTP 500" in result.detail
    assert len(pagerduty.requests) == 2


async def test_an_invalid_event_is_not_retried_and_pagerduty_s_reason_is_kept_without_the_key(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts], caplog: pytest.LogCaptureFixture
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    # A routing key PagerDuty refuses (31 characters): the event is invalid whatever the engine tries.
    short_key = ROUTING_KEY[:-1]
    settings = engine_settings(database_url, tmp_path, pagerduty, pagerduty_routing_key=short_key)
    parts = await open_engine(settings, opened)
    await store_change(parts, opened_change())
    with caplog.at_level(logging.DEBUG):
        [result] = await drain(parts)
    assert result.status is ActionStatus.FAILED
    assert len(pagerduty.requests) == 1
    assert "HTTP 400" in result.detail
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in result.detail
    assert "Length of 'routing_key' is incorrect" in caplog.text
    assert short_key not in result.detail
    assert short_key not in caplog.text
    detail = await parts.store.get_incident("inc-1")
    assert short_key not in repr(detail)


async def test_the_routing_key_is_redacted_from_whatever_comes_back(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts], caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile or buggy answer that echoes the key back: neither the record nor the log shows it."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    original = pagerduty._enqueue

    def echoing(body: Any) -> tuple[int, dict[str, Any]]:
        return 400, {"status": "invalid event", "message": f"bad key {body['routing_key']}", "errors": []}

    pagerduty._enqueue = echoing  # type: ignore[method-assign]
    await store_change(parts, opened_change())
    with caplog.at_level(logging.DEBUG):
        [result] = await drain(parts)
    pagerduty._enqueue = original  # type: ignore[method-assign]
    assert "bad key [redacted]" in result.detail
    assert ROUTING_KEY not in result.detail
    assert ROUTING_KEY not in caplog.text


def test_settings_never_show_the_routing_keys(tmp_path: Path, pagerduty: PagerDutyStub) -> None:
    settings = engine_settings(
        "sqlite+aiosqlite://", tmp_path, pagerduty, pagerduty_routing_keys=f"ml-oncall={OTHER_KEY}"
    )
    assert ROUTING_KEY not in repr(settings)
    assert ROUTING_KEY not in str(settings)
    assert OTHER_KEY not in repr(settings)


@pytest.mark.parametrize(
    "named",
    [
        pytest.param(OTHER_KEY, id="a-key-without-a-name"),
        pytest.param(f"={OTHER_KEY}", id="an-empty-name"),
        pytest.param(f"ML Oncall={OTHER_KEY}", id="a-name-playbooks-cannot-write"),
        pytest.param(f"ml=ok,{OTHER_KEY}", id="the-second-entry"),
    ],
)
def test_unusable_named_keys_stop_the_engine_without_showing_a_key(
    tmp_path: Path, pagerduty: PagerDutyStub, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid setting AIOPS_PAGERDUTY_ROUTING_KEYS: .*entry \d") as raised:
        engine_settings("sqlite+aiosqlite://", tmp_path, pagerduty, pagerduty_routing_keys=named)
    assert OTHER_KEY not in str(raised.value)
    assert ROUTING_KEY not in str(raised.value)


# --- the playbook action ------------------------------------------------------------------------------------

PLAYBOOK = """
name: page-ml-oncall
triggers:
  - series: model_request_latency_p99_seconds
steps:
  - action: pagerduty_trigger
    params:
      summary: "{{ incident.labels.model }} is slow ({{ incident.severity }})"
      severity: "{{ incident.severity }}"
      source: "{{ incident.labels.instance }}"
      routing_key: ml-oncall
"""


async def test_a_playbook_pages_through_a_named_routing_key(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    settings = engine_settings(
        database_url, tmp_path, pagerduty, pagerduty_routing_keys=f"ml-oncall={OTHER_KEY}, spare={ROUTING_KEY}"
    )
    (settings.playbook_dir / "page.yaml").write_text(PLAYBOOK, encoding="utf-8")
    parts = await open_engine(settings, opened)
    await store_change(parts, opened_change(severity=Severity.WARNING))
    results = await drain(parts)

    [page] = [r for r in results if r.request.action == "pagerduty_trigger"]
    assert page.status is ActionStatus.SUCCEEDED
    [event] = [e for e in pagerduty.events() if e["routing_key"] == OTHER_KEY]
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "inc-1/page-ml-oncall/0"
    assert event["payload"]["summary"] == "fraud-detector is slow (warning)"
    assert event["payload"]["severity"] == "warning"
    assert event["payload"]["source"] == "10.0.0.7:8080"
    assert event["payload"]["custom_details"] == {
        "incident_id": "inc-1",
        "playbook": "page-ml-oncall",
        "step": 1,
        "action_id": page.request.id,
    }
    # The playbook's record names the key, never holds it.
    assert OTHER_KEY not in repr(page.request.params)
    assert OTHER_KEY not in page.detail


async def test_a_playbook_naming_an_unconfigured_key_fails_its_step_clearly(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    settings = engine_settings(database_url, tmp_path, pagerduty)
    (settings.playbook_dir / "page.yaml").write_text(PLAYBOOK, encoding="utf-8")
    parts = await open_engine(settings, opened)
    await store_change(parts, opened_change())
    results = await drain(parts)
    [page] = [r for r in results if r.request.action == "pagerduty_trigger"]
    assert page.status is ActionStatus.FAILED
    assert "no PagerDuty routing key named 'ml-oncall' is configured (configured: default)" in page.detail
    assert ROUTING_KEY not in page.detail


# --- change events ------------------------------------------------------------------------------------------


def action_result(
    status: ActionStatus, *, action: str = "rollout_restart", mode: ActionMode = ActionMode.LIVE
) -> ActionResult:
    request = ActionRequest.create(
        id="act-0123456789abcdef0123",
        incident_id="inc-1",
        playbook="restart-stuck",
        step=0,
        action=action,
        params={"namespace": "serving", "deployment": "fraud"} if action == "rollout_restart" else {"summary": "s"},
        mode=mode,
        requested_at=NOW,
    )
    return ActionResult(request, status, "restarted the pods of deployment serving/fraud", NOW + 5.0)


def changes_for(stub: PagerDutyStub, *, capacity: int = 100, key: str = ROUTING_KEY) -> PagerDutyChanges:
    keys = RoutingKeys.parse(SecretStr(key), SecretStr(""))
    return PagerDutyChanges(
        keys,
        CollectorRegistry(),
        SkippingClock(NOW),
        url=stub.url,
        public_url="https://aiops.example.com",
        capacity=capacity,
    )


async def sending(changes: PagerDutyChanges, done: Callable[[], bool]) -> None:
    """Run the sender until ``done`` holds (5 s at most), then stop it."""
    task = asyncio.create_task(changes.run())
    try:
        for _ in range(500):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the change events were not sent within 5 s")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await changes.aclose()


def outcome(changes: PagerDutyChanges, name: str) -> float:
    return changes.outcomes.labels(name)._value.get()


async def test_a_live_change_is_a_change_event_and_notifications_and_dry_runs_are_not(pagerduty: PagerDutyStub) -> None:
    changes = changes_for(pagerduty)
    changes.on_action(action_result(ActionStatus.DRY_RUN, mode=ActionMode.DRY_RUN))
    changes.on_action(action_result(ActionStatus.FAILED))
    changes.on_action(action_result(ActionStatus.SUCCEEDED, action="pagerduty_trigger"))
    changes.on_action(action_result(ActionStatus.SUCCEEDED))
    await sending(changes, lambda: outcome(changes, "sent") >= 1)

    [event] = pagerduty.changes
    assert event == {
        "routing_key": ROUTING_KEY,
        "payload": {
            "summary": "aiops-engine rollout_restart on deployment:serving/fraud: succeeded",
            "timestamp": "2025-06-15T15:06:45+00:00",
            "source": "aiops-engine",
            "custom_details": {
                "action": "rollout_restart",
                "target": "deployment:serving/fraud",
                "outcome": "succeeded",
                "detail": "restarted the pods of deployment serving/fraud",
                "incident_id": "inc-1",
                "playbook": "restart-stuck",
                "step": 1,
                "action_id": "act-0123456789abcdef0123",
            },
        },
        "links": [{"href": "https://aiops.example.com/ui/incidents/inc-1", "text": "Incident in aiops-engine"}],
    }


async def test_change_events_are_retried_on_429_and_5xx(pagerduty: PagerDutyStub) -> None:
    changes = changes_for(pagerduty)
    pagerduty.fail_next(429)
    pagerduty.fail_next(502)
    changes.on_action(action_result(ActionStatus.UNDONE))
    await sending(changes, lambda: outcome(changes, "sent") >= 1)
    assert [request["status"] for request in pagerduty.requests] == [429, 502, 202]
    assert pagerduty.changes[0]["payload"]["custom_details"]["outcome"] == "undone"


async def test_a_refused_change_event_is_counted_and_logged_without_the_key(
    pagerduty: PagerDutyStub, caplog: pytest.LogCaptureFixture
) -> None:
    short_key = ROUTING_KEY[:-1]
    changes = changes_for(pagerduty, key=short_key)
    changes.on_action(action_result(ActionStatus.SUCCEEDED))
    with caplog.at_level(logging.WARNING):
        await sending(changes, lambda: outcome(changes, "failed") >= 1)
    assert len(pagerduty.requests) == 1
    assert "Length of 'routing_key' is incorrect" in caplog.text
    assert short_key not in caplog.text


async def test_a_full_queue_drops_and_counts_instead_of_holding_the_pipeline(pagerduty: PagerDutyStub) -> None:
    changes = changes_for(pagerduty, capacity=2)
    for _ in range(5):
        changes.on_action(action_result(ActionStatus.SUCCEEDED))  # never waits: the pipeline calls this
    assert outcome(changes, "dropped") == 3
    await sending(changes, lambda: outcome(changes, "sent") >= 2)
    assert len(pagerduty.changes) == 2


async def test_the_engine_sends_change_events_where_incidents_page(
    tmp_path: Path, pagerduty: PagerDutyStub, opened: list[SharedParts]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    parts = await open_engine(engine_settings(database_url, tmp_path, pagerduty), opened)
    assert parts.changes is not None
    text = generate_latest(parts.metrics.registry).decode()
    assert 'aiops_pagerduty_change_events_total{outcome="dropped"} 0.0' in text
