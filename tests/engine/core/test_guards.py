"""Each guard, through the same path the pipeline uses: planner -> guards -> executor -> ledger."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.actions.executor import ActionExecutor
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.core.playbooks.guards import Policy, RunHistory
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode, ActionStatus, IncidentChange, IncidentChangeKind, SeriesKey
from tests.engine.factories import LATENCY, incident

HOUR = 3600.0


def _playbook(name: str = "scale", action: str = "scale_deployment", **extra: Any) -> Playbook:
    params: dict[str, Any] = {
        "namespace": "{{ incident.labels.namespace }}",
        "deployment": "{{ incident.labels.model }}",
    }
    if action == "scale_deployment":
        params["step"] = 1
    if action == "mlflow_rollback_alias":
        params = {"model": "{{ incident.labels.model }}"}
    return Playbook.model_validate(
        {"name": name, "triggers": [{"series": LATENCY.name}], "steps": [{"action": action, "params": params}]} | extra
    )


def _remediator(*playbooks: Playbook, policy: Policy | None = None, ledger: MemoryLedger | None = None) -> Remediator:
    executor = ActionExecutor(ledger or MemoryLedger(), FakeClock(), backends={})
    return Remediator(Planner(playbooks, ActionMode.DRY_RUN), executor, policy or Policy(), RunHistory())


async def _open(remediator: Remediator, at: float, *, model: str = "fraud", namespace: str = "serving") -> list[str]:
    series = SeriesKey.of(LATENCY.name, {"model": model, "namespace": namespace})
    change = IncidentChange(
        IncidentChangeKind.OPENED, incident(series=series, id=f"inc-{at}-{model}", opened_at=at), at
    )
    return [f"{r.status.value}: {r.detail}" for r in await remediator.handle(change)]


async def test_cooldown_skips_a_second_run_on_the_same_target_only() -> None:
    remediator = _remediator(_playbook(guards={"cooldown": "30m"}))
    assert (await _open(remediator, 0))[0].startswith("dry-run")
    [skipped] = await _open(remediator, 10 * 60)
    assert skipped.startswith("skipped: skipped by guard cooldown: scale last ran on deployment:serving/fraud 600s ago")
    assert (await _open(remediator, 10 * 60, model="ranker"))[0].startswith("dry-run")
    assert (await _open(remediator, 31 * 60))[0].startswith("dry-run")


async def test_spent_budget_stops_and_escalates() -> None:
    remediator = _remediator(_playbook(guards={"budget": {"runs": 2, "window": "1h"}}))
    assert [o.split(":")[0] for o in [*(await _open(remediator, 0)), *(await _open(remediator, 60))]] == [
        "dry-run",
        "dry-run",
    ]
    [third] = await _open(remediator, 120)
    assert third.startswith("skipped: skipped by guard budget: remediation budget spent: 2 of 2 runs")
    assert third.endswith("(escalated to a human)")
    assert (await _open(remediator, HOUR + 1))[0].startswith("dry-run")


async def test_step_guards_override_the_playbooks() -> None:
    playbook = _playbook(guards={"cooldown": "1h"})
    relaxed = playbook.model_copy(
        update={
            "steps": [playbook.steps[0].model_copy(update={"guards": playbook.guards.model_validate({"cooldown": 0})})]
        }
    )
    remediator = _remediator(relaxed)
    assert (await _open(remediator, 0))[0].startswith("dry-run")
    assert (await _open(remediator, 1))[0].startswith("dry-run")


async def test_allowlist_of_playbook_and_policy() -> None:
    remediator = _remediator(_playbook(guards={"allow": {"namespaces": ["serving"]}}))
    [refused] = await _open(remediator, 0, namespace="payments")
    assert refused == (
        "skipped: skipped by guard allow (playbook): namespace 'payments' is not in the allowlist ['serving']"
    )
    policy = Policy.model_validate({"allow": {"targets": ["deployment:serving/fraud*"]}})
    remediator = _remediator(_playbook(), policy=policy)
    assert (await _open(remediator, 0, model="fraud-v2"))[0].startswith("dry-run")
    assert "matches no allowed pattern" in (await _open(remediator, 0, model="ranker"))[0]


async def test_blast_radius_counts_runs_across_playbooks() -> None:
    policy = Policy.model_validate(
        {
            "blast_radius": [
                {
                    "name": "one-rollback-per-model",
                    "actions": ["mlflow_rollback_alias"],
                    "per": "target",
                    "max_runs": 1,
                    "window": "1h",
                }
            ]
        }
    )
    first = _playbook("rollback-a", "mlflow_rollback_alias")
    second = _playbook("rollback-b", "mlflow_rollback_alias")
    remediator = _remediator(first, second, policy=policy)
    outcomes = await _open(remediator, 0)
    assert outcomes[0].startswith("dry-run")
    assert outcomes[1].startswith("skipped: skipped by guard blast_radius:one-rollback-per-model: one-rollback")


async def test_blast_radius_limits_distinct_targets_per_namespace() -> None:
    policy = Policy.model_validate(
        {
            "blast_radius": [
                {
                    "name": "two-deployments",
                    "actions": ["scale_deployment", "rollout_restart"],
                    "per": "namespace",
                    "max_targets": 2,
                    "window": "1h",
                }
            ]
        }
    )
    remediator = _remediator(_playbook(), policy=policy)
    assert (await _open(remediator, 0, model="a"))[0].startswith("dry-run")
    assert (await _open(remediator, 1, model="b"))[0].startswith("dry-run")
    assert (await _open(remediator, 2, model="a"))[0].startswith("dry-run")  # already touched: still two targets
    assert "would touch 3 targets in namespace serving" in (await _open(remediator, 3, model="c"))[0]
    assert (await _open(remediator, 4, model="c", namespace="batch"))[0].startswith("dry-run")


async def test_a_skipped_step_is_claimed_so_a_replay_does_not_run_it_later() -> None:
    ledger = MemoryLedger()
    remediator = _remediator(_playbook(guards={"cooldown": "1h"}), ledger=ledger)
    await _open(remediator, 0)
    [skipped] = await _open(remediator, 60)
    assert skipped.startswith("skipped")
    # The same incident change again (a replay after a restart), after the cooldown has passed in event time.
    series = SeriesKey.of(LATENCY.name, {"model": "fraud", "namespace": "serving"})
    replayed = IncidentChange(IncidentChangeKind.OPENED, incident(series=series, id="inc-60-fraud", opened_at=60), 60)
    restarted = _remediator(_playbook(guards={"cooldown": "1h"}), ledger=ledger)  # empty history, same ledger
    [again] = await restarted.handle(replayed)
    assert again.status is ActionStatus.DUPLICATE


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"name": "x", "actions": ["nuke"], "max_runs": 1, "window": "1h"}, "unknown action(s) nuke"),
        ({"name": "x", "actions": ["rollout_undo"], "window": "1h"}, "exactly one of 'max_runs' or 'max_targets'"),
        ({"name": "x", "actions": ["rollout_undo"], "max_runs": 1, "window": "1h", "per": "galaxy"}, "per"),
    ],
)
def test_invalid_policies_are_rejected(rule: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Policy.model_validate({"blast_radius": [rule]})
    assert fragment in str(info.value)
