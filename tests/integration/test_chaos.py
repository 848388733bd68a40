"""The chaos benchmark as a test: a few trials of two `aiops serve` replicas acting on the real Kubernetes control
plane while the harness kills replicas and restarts or freezes PostgreSQL and the broker (private ones), compared
with an uninterrupted run. No trial may act twice, lose a step or an incident, act without approval, overrun a
budget or undo an action that helped.

Restarts here keep the replica's identity, so that a step a killed replica held is taken over at once rather than
when its lease runs out (minutes); the benchmark's full run (``python -m benchmarks.chaos``) restarts some replicas
under a new identity too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.chaos_scenario import LATENCY_PLAYBOOK
from benchmarks.chaos_truth import COUNTS, ClusterTruth, Execution, RunTruth, StepRow, StoreTruth, compare
from benchmarks.services import REPO, kafka_jars_fetched, postgres_bin

KUBECONFIG = os.environ.get("AIOPS_TEST_KUBECONFIG")
TRIALS = 5
WEB, BATCH = ("chaos_latency_seconds", "web", 4), ("chaos_error_ratio", "batch", 3)


def _step(step_id: str, incident: tuple[str, str, int], status: str, **fields: object) -> StepRow:
    deployment = incident[1]
    values: dict[str, object] = {
        "playbook": LATENCY_PLAYBOOK,
        "step": 0,
        "target": f"deployment:ns/{deployment}",
        "detail": "",
        "counts": True,
        "requested_at": 0.0,
        "decided_by": None,
        "lease_owner": None,
    }
    return StepRow(id=step_id, incident=incident, status=status, **(values | fields))


def _run(steps: list[StepRow], executions: list[Execution], approvals: dict[str, float] | None = None) -> RunTruth:
    incidents = frozenset(step.incident for step in steps)
    return RunTruth(0.0, StoreTruth(incidents, tuple(steps)), ClusterTruth(executions), approvals or {})


REFERENCE = _run(
    [_step("a", WEB, "succeeded"), _step("b", BATCH, "succeeded", playbook="approve", decided_by="harness")],
    [Execution("web", "a", 5.0, 1), Execution("batch", "b", 9.0, 1)],
    {"b": 8.0},
)


def test_a_trial_like_the_uninterrupted_run_counts_nothing() -> None:
    comparison = compare(REFERENCE, REFERENCE)
    assert not comparison.counts.nonzero(), comparison.evidence


def test_each_kind_of_harm_is_counted_from_what_the_cluster_and_the_ledger_show() -> None:
    trial = _run(
        [
            _step("a", WEB, "undone"),
            _step("a2", (*WEB[:2], 12), "succeeded"),
            _step("a3", (*WEB[:2], 20), "succeeded"),
            _step("b", BATCH, "succeeded", playbook="approve", decided_by="harness"),
        ],
        [
            Execution("web", "a", 5.0, 1),
            Execution("web", "a2", 13.0, 1),
            Execution("web", "a3", 21.0, 1),
            Execution("web", "a/undo", 11.0, -1),
            # the step needing approval changed the deployment before the approval was sent
            Execution("batch", "b", 7.0, 1),
        ],
        {"b": 8.0},
    )
    lost_run = _run([_step("b", BATCH, "awaiting-approval", playbook="approve")], [])
    counts = compare(REFERENCE, trial).counts
    assert (counts.duplicate_actions, counts.unapproved_runs, counts.budget_overruns) == (2, 1, 1)
    assert counts.undone_good_actions == 1
    lost = compare(REFERENCE, lost_run).counts
    assert (lost.lost_steps, lost.lost_incidents) == (2, 1)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(KUBECONFIG is None, reason="AIOPS_TEST_KUBECONFIG is not set (make test starts Kubernetes)")
@pytest.mark.skipif(not kafka_jars_fetched(), reason="the Kafka jars are not fetched (kafka.sh fetch)")
@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")
def test_kills_and_outages_change_nothing_the_engine_does(tmp_path: Path) -> None:
    details = tmp_path / "findings.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.chaos", "--trials", str(TRIALS), "--seed", "1", "--new-id-share", "0",
            "--details", str(details), "--json",
        ],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-5000:]
    result = json.loads(run.stdout)
    assert result["trials"] == TRIALS
    counts = {name: result[name] for name in COUNTS}
    assert counts == dict.fromkeys(counts, 0), details.read_text()[-20000:]
