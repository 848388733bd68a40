"""Each guard, through the same path the pipeline uses: planner -> ledger -> admission (guards) -> executor.

Guards count the runs the action ledger holds, so replicas sharing a ledger (or a restarted one) see each other's
runs, however long ago they were within a guard's window."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.memory import InMemoryLedger
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.remediation import Remediator
from engine.domain.events import ActionResult, ActionStatus, IncidentChange, IncidentChangeKind, SeriesKey
from tests.engine.core.remediating import handle, remediator
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


class _Replica:
    """A remediator on a ledger that may be shared with other replicas."""

    def __init__(
        self, *playbooks: Playbook, policy: Policy | None = None, ledger: InMemoryLedger | None = None, owner: str = "a"
    ) -> None:
        self.ledger = ledger or InMemoryLedger()
        self.remediator: Remediator = remediator(self.ledger, playbooks, policy=policy, owner=f"replica-{owner}")

    async def handle(self, change: IncidentChange) -> list[ActionResult]:
        return await handle(self.remediator, self.ledger, change)


def _remediator(*playbooks: Playbook, policy: Policy | None = None, ledger: InMemoryLedger | None = None) -> _Replica:
    return _Replica(*playbooks, policy=policy, ledger=ledger)


def _opened(at: float, *, model: str = "fraud", namespace: str = "serving") -> IncidentChange:
    series = SeriesKey.of(LATENCY.name, {"model": model, "namespace": namespace})
    return IncidentChange(IncidentChangeKind.OPENED, incident(series=series, id=f"inc-{at}-{model}", opened_at=at), at)


async def _open(replica: _Replica, at: float, *, model: str = "fraud", namespace: str = "serving") -> list[str]:
    return [
        f"{r.status.value}: {r.detail}" for r in await replica.handle(_opened(at, model=model, namespace=namespace))
    ]


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


async def test_a_skipped_step_is_stored_so_a_replay_does_not_run_it_later() -> None:
    ledger = InMemoryLedger()
    replica = _remediator(_playbook(guards={"cooldown": "1h"}), ledger=ledger)
    await _open(replica, 0)
    [skipped] = await replica.handle(_opened(60))
    assert skipped.status is ActionStatus.SKIPPED
    # The same incident change again (a replay after a restart), after the cooldown has passed in event time.
    restarted = _remediator(_playbook(guards={"cooldown": "1h"}), ledger=ledger)  # a new process, same ledger
    assert await restarted.handle(_opened(60)) == []
    assert await ledger.status(skipped.request.id) is ActionStatus.SKIPPED


async def test_a_cooldown_counts_the_runs_of_another_replica_on_the_same_ledger() -> None:
    ledger = InMemoryLedger()
    first = _Replica(_playbook(guards={"cooldown": "30m"}), ledger=ledger, owner="a")
    second = _Replica(_playbook(guards={"cooldown": "30m"}), ledger=ledger, owner="b")
    [ran] = await first.handle(_opened(0))
    assert ran.status is ActionStatus.DRY_RUN
    [skipped] = await second.handle(_opened(10 * 60))
    assert (skipped.status, skipped.effects["guard"]) == (ActionStatus.SKIPPED, "cooldown")
    # Only this target: the other replica still acts on another one.
    [other] = await second.handle(_opened(10 * 60, model="ranker"))
    assert other.status is ActionStatus.DRY_RUN


async def test_a_restarted_replica_still_counts_the_runs_made_before_the_restart() -> None:
    ledger = InMemoryLedger()
    await _Replica(_playbook(guards={"cooldown": "30m"}), ledger=ledger).handle(_opened(0))
    restarted = _Replica(_playbook(guards={"cooldown": "30m"}), ledger=ledger)  # same name, nothing in memory
    [skipped] = await restarted.handle(_opened(60))
    assert (skipped.status, skipped.effects["guard"]) == (ActionStatus.SKIPPED, "cooldown")


async def test_a_budget_window_longer_than_a_week_counts_runs_from_its_start() -> None:
    playbook = _playbook(guards={"budget": {"runs": 1, "window": "30d"}})
    ledger = InMemoryLedger()
    [ran] = await _Replica(playbook, ledger=ledger, owner="a").handle(_opened(0))
    assert ran.status is ActionStatus.DRY_RUN
    [spent] = await _Replica(playbook, ledger=ledger, owner="b").handle(_opened(20 * 86400.0))
    assert (spent.status, spent.effects["guard"], spent.effects["escalated"]) == (ActionStatus.SKIPPED, "budget", True)
    [again] = await _Replica(playbook, ledger=ledger, owner="b").handle(_opened(30 * 86400.0 + 1))
    assert again.status is ActionStatus.DRY_RUN


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
