"""The scenario every chaos trial replays: three metric series, the playbooks that act on them, and what the
harness knows about them because it generates them.

Event times follow the wall clock (a point at offset ``k`` is stamped ``t0 + k`` and sent at that moment), since a
live engine opens the verification window of an approved step at the wall-clock moment it ran. Before ``t0`` each
series gets a quiet history at once, so that the detector is warm when the live part starts.

* ``web``: latency spikes at 4 s, 12 s and 20 s, each back to normal at the next point. The latency playbook scales
  ``web`` by +1 (cooldown, budget of 2 runs per hour, verification): the first two spikes are scaled out and
  verified (good actions: the series recovered within the window), the third is refused by the budget.
* ``api``: latency jumps at 6 s and stays high. The same playbook scales ``api`` by +1; verification fails and the
  step is undone (an action that did not help; undoing it is right).
* ``batch``: the error ratio is high from 3 s to 12 s. The approval playbook scales ``batch`` by +1 once a person
  approves (the harness, through the API of a random replica, while the incident is still open: a step of a resolved
  incident can no longer be approved), then verifies it over 15 s (it recovered: a good action).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.domain.events import SeriesKey

STEP_S = 1.0
WARMUP_POINTS = 60
LATENCY, ERRORS = "chaos_latency_seconds", "chaos_error_ratio"
LATENCY_PLAYBOOK, APPROVAL_PLAYBOOK = "chaos-latency-scale-out", "chaos-errors-scale-out"
BUDGET_RUNS, BUDGET_WINDOW_S = 2, 3600.0
VERIFY_WITHIN_S = 5.0
# An approved step's window opens when it runs, while its series is still high: long enough to see it recover.
APPROVED_VERIFY_WITHIN_S = 15.0
# The harness approves by this offset: the error-ratio incident resolves 4 s after its last signal (8 s), and a step
# of a resolved incident can no longer be approved.
APPROVE_BY_S = 10.0
# The live part lasts at least this long; it goes on (quiet) until the trial's steps are settled.
MIN_LIVE_S = 26
BASELINE, SPIKE = 0.1, 2.0
INITIAL_REPLICAS = {"web": 2, "api": 2, "batch": 1}


@dataclass(frozen=True)
class ChaosSeries:
    name: str
    deployment: str
    partition: int
    spikes: tuple[int, ...]
    # From this offset on the series stays at the spike's level (its action cannot help).
    stays_high_from: int | None = None

    @property
    def recovers(self) -> bool:
        """Whether every action on this series' deployment is followed by recovery within its window."""
        return self.stays_high_from is None

    def key(self, namespace: str) -> SeriesKey:
        return SeriesKey.of(self.name, {"namespace": namespace, "deployment": self.deployment})

    def value(self, offset: int) -> float:
        """The value at ``offset`` seconds from the start of the live part (negative: the warm-up history). The
        noise depends on the series and the offset only, so every trial sees the same data."""
        noise = np.random.default_rng([self.partition, offset + 10_000]).normal(0.0, 0.004)
        if offset in self.spikes or (self.stays_high_from is not None and offset >= self.stays_high_from):
            return SPIKE + float(noise)
        return BASELINE + float(noise)


SERIES = (
    ChaosSeries(LATENCY, "web", 0, (4, 12, 20)),
    ChaosSeries(LATENCY, "api", 1, (6,), stays_high_from=6),
    ChaosSeries(ERRORS, "batch", 2, tuple(range(3, 13))),
)
PARTITIONS = len(SERIES)
BY_DEPLOYMENT = {series.deployment: series for series in SERIES}
APPROVED_DEPLOYMENTS = frozenset({"batch"})


def write_playbooks(directory: Path, namespace: str) -> Path:
    """The two playbooks and a policy that allows only ``namespace``."""
    directory.mkdir(parents=True)
    scale = (
        "  - action: scale_deployment\n"
        "    params:\n"
        '      namespace: "{{ incident.labels.namespace }}"\n'
        '      deployment: "{{ incident.labels.deployment }}"\n'
        "      step: 1\n"
        "      min_replicas: 1\n"
        "      max_replicas: 20\n"
    )

    def verify(within: float) -> str:
        return f"    verify:\n      condition: value < 0.5\n      within: {within:g}s\n      missing_data: fail\n"

    (directory / f"{LATENCY_PLAYBOOK}.yaml").write_text(
        f"name: {LATENCY_PLAYBOOK}\n"
        "triggers:\n"
        f"  - series: {LATENCY}\n"
        "    min_severity: info\n"
        "guards:\n"
        "  cooldown: 5s\n"
        f"  budget: {{runs: {BUDGET_RUNS}, window: {BUDGET_WINDOW_S:g}s}}\n"
        "steps:\n" + scale + verify(VERIFY_WITHIN_S)
    )
    (directory / f"{APPROVAL_PLAYBOOK}.yaml").write_text(
        f"name: {APPROVAL_PLAYBOOK}\n"
        "triggers:\n"
        f"  - series: {ERRORS}\n"
        "    min_severity: info\n"
        "steps:\n" + scale + "    approval: required\n    approval_timeout: 10m\n" + verify(APPROVED_VERIFY_WITHIN_S)
    )
    (directory / "_policy.yaml").write_text(f"allow:\n  namespaces: [{namespace}]\n")
    return directory
