"""Ack timeouts and escalation chains, on the real store (SQLite) and the real executor, with a recording
notification backend and fake time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.catalogue import ActionParams, WebhookNotifyParams
from engine.core.actions.executor import ActionExecutor
from engine.core.escalation import Escalation, Escalator
from engine.domain.clock import FakeClock
from engine.domain.errors import PermanentError
from engine.domain.events import ActionMode, ActionRequest, IncidentChange, IncidentChangeKind, IncidentState, Severity
from tests.engine.factories import incident

MINUTE = 60.0
POLICY = Escalation.model_validate(
    {
        "ack_timeout": "30m",
        "chain": [
            {"after": "0s", "url": "https://hooks.example.com/primary", "message": "page the primary"},
            {"after": "10m", "url": "https://hooks.example.com/secondary", "format": "json"},
        ],
    }
)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, str]] = []
        self.clock: FakeClock | None = None

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        assert isinstance(params, WebhookNotifyParams)
        assert self.clock is not None
        self.sent.append((self.clock.now(), params.url.rsplit("/", 1)[1], params.message))
        return "sent"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        raise PermanentError("notifications cannot be undone")

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        return False


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    yield opened
    await opened.close()


async def _setup(store: SqlStore, policy: Escalation | None = POLICY) -> tuple[Escalator, Recorder, FakeClock]:
    clock = FakeClock(0.0)
    recorder = Recorder()
    recorder.clock = clock
    executor = ActionExecutor(store.ledger, clock, {"webhook_notify": recorder}, owner="replica-a")
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-1", opened_at=0.0), 0.0))
    return Escalator(store, executor, clock, lambda: policy, ActionMode.LIVE), recorder, clock


async def _at(escalator: Escalator, clock: FakeClock, at: float) -> None:
    clock.advance(at - clock.now())
    await escalator.tick()


async def test_the_chain_notifies_each_level_once_when_its_delay_has_passed(store: SqlStore) -> None:
    escalator, recorder, clock = await _setup(store)
    for at in (30.0, 60.0, 9 * MINUTE):
        await _at(escalator, clock, at)
    assert [(at, target) for at, target, _ in recorder.sent] == [(30.0, "primary")]
    assert "page the primary" in recorder.sent[0][2]
    for at in (10 * MINUTE + 1, 15 * MINUTE):
        await _at(escalator, clock, at)
    assert [target for _, target, _ in recorder.sent] == ["primary", "secondary"]
    actions = await store.list_actions(limit=10)
    assert {a.playbook for a in actions} == {"escalation"}


async def test_an_acknowledged_incident_is_not_escalated_until_its_ack_times_out(store: SqlStore) -> None:
    escalator, recorder, clock = await _setup(store)
    await _at(escalator, clock, 30.0)
    ack_at = 5 * MINUTE
    await store.decide_incident(
        "inc-1",
        allowed_from=frozenset({IncidentState.OPEN}),
        to=IncidentState.ACKNOWLEDGED,
        kind="acknowledged",
        by="alice",
        comment="",
        at=ack_at,
    )
    await _at(escalator, clock, ack_at + 29 * MINUTE)
    assert len(recorder.sent) == 1
    assert (await store.get_incident("inc-1")).incident.state is IncidentState.ACKNOWLEDGED

    await _at(escalator, clock, ack_at + 30 * MINUTE)
    detail = await store.get_incident("inc-1")
    assert detail.incident.state is IncidentState.OPEN
    assert any(event.kind == "ack timed out" for event in detail.timeline)
    # Re-opened: the chain starts again from its first level, then its second ten minutes later.
    assert [target for _, target, _ in recorder.sent] == ["primary", "primary"]
    await _at(escalator, clock, ack_at + 41 * MINUTE)
    assert [target for _, target, _ in recorder.sent] == ["primary", "primary", "secondary"]


async def test_snoozed_resolved_and_minor_incidents_are_left_alone(store: SqlStore) -> None:
    escalator, recorder, clock = await _setup(store)
    await store.annotate_incident("inc-1", kind="snoozed", by="bob", comment="", at=0.0, snoozed_until=20 * MINUTE)
    await store.apply_change(
        IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-minor", opened_at=0.0, severity=Severity.INFO), 0.0)
    )
    await _at(escalator, clock, 15 * MINUTE)
    assert recorder.sent == []
    await _at(escalator, clock, 21 * MINUTE)
    assert [target for _, target, _ in recorder.sent] == ["primary", "secondary"]
    await store.decide_incident(
        "inc-1",
        allowed_from=frozenset({IncidentState.OPEN}),
        to=IncidentState.RESOLVED,
        kind="resolved",
        by="bob",
        comment="",
        at=22 * MINUTE,
    )
    await _at(escalator, clock, 200 * MINUTE)
    assert len(recorder.sent) == 2


async def test_without_an_escalation_policy_nothing_happens(store: SqlStore) -> None:
    escalator, recorder, clock = await _setup(store, policy=None)
    await _at(escalator, clock, 100 * MINUTE)
    assert recorder.sent == []


async def test_replicas_sharing_the_ledger_send_each_notification_once(store: SqlStore) -> None:
    escalator, recorder, clock = await _setup(store)
    other_executor = ActionExecutor(store.ledger, clock, {"webhook_notify": recorder}, owner="replica-b")
    other = Escalator(store, other_executor, clock, lambda: POLICY, ActionMode.LIVE)
    for at in (30.0, 60.0, 10 * MINUTE + 1, 15 * MINUTE):
        clock.advance(at - clock.now())
        await escalator.tick()
        await other.tick()
    assert [(at, target) for at, target, _ in recorder.sent] == [(30.0, "primary"), (10 * MINUTE + 1, "secondary")]
