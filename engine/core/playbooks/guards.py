"""Guards: the rules that can stop a planned step before it runs.

* ``allow``: namespaces and target patterns a playbook (and the global policy) may touch;
* ``cooldown``: no second run of a playbook on the same target within this time;
* ``budget``: at most N runs of a playbook per target per window; when spent, stop and escalate to a human;
* blast-radius limits (global policy, across playbooks): at most N runs, or N distinct targets, of some actions
  per target, namespace or cluster within a window.

Times are event times, so dry-runs, replays and playbook tests see exactly the verdicts that live mode would.
A skipped step is recorded like any other decision, with the guard and the reason.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.actions.catalogue import CATALOGUE, ActionParams
from engine.core.escalation import Escalation
from engine.core.playbooks.expressions import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Budget(_Strict):
    runs: int = Field(ge=1, description="runs allowed per target within the window")
    window: Duration


class Allow(_Strict):
    namespaces: list[str] = Field(default_factory=list, description="namespaces that may be touched (empty: any)")
    targets: list[str] = Field(
        default_factory=list,
        description="target patterns that may be touched, e.g. deployment:serving/* or model:fraud-* (empty: any)",
    )

    def refuses(self, params: ActionParams) -> str | None:
        namespace = params.target_namespace()
        if self.namespaces and namespace is not None and namespace not in self.namespaces:
            return f"namespace {namespace!r} is not in the allowlist {self.namespaces}"
        target = params.target()
        if self.targets and not any(fnmatch.fnmatchcase(target, pattern) for pattern in self.targets):
            return f"target {target!r} matches no allowed pattern {self.targets}"
        return None


class Guards(_Strict):
    cooldown: Duration | None = Field(default=None, description="minimum time between runs on the same target")
    budget: Budget | None = None
    allow: Allow | None = None

    def overridden_by(self, step: Guards | None) -> Guards:
        """These guards with the fields a step sets itself replaced."""
        if step is None:
            return self
        return self.model_copy(update={name: getattr(step, name) for name in step.model_fields_set})


class BlastRadius(_Strict):
    """At most ``max_runs`` runs or ``max_targets`` distinct targets of ``actions`` per group per window."""

    name: str = Field(min_length=1)
    actions: list[str] = Field(min_length=1)
    per: Literal["target", "namespace", "cluster"] = "namespace"
    max_runs: int | None = Field(default=None, ge=1)
    max_targets: int | None = Field(default=None, ge=1)
    window: Duration

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, actions: list[str]) -> list[str]:
        unknown = sorted(set(actions) - set(CATALOGUE))
        if unknown:
            raise ValueError(f"unknown action(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CATALOGUE))}")
        return actions

    @model_validator(mode="after")
    def _one_limit(self) -> BlastRadius:
        if (self.max_runs is None) == (self.max_targets is None):
            raise ValueError("give exactly one of 'max_runs' or 'max_targets'")
        return self


class Policy(_Strict):
    """Rules for every playbook: the global allowlist and the blast-radius limits."""

    allow: Allow | None = None
    blast_radius: list[BlastRadius] = Field(default_factory=list)
    escalation: Escalation | None = None


@dataclass(frozen=True)
class PastRun:
    """A step that ran (or, in dry-run, would have run) and so counts against guards."""

    playbook: str
    action: str
    target: str
    namespace: str | None
    at: float


@dataclass(frozen=True)
class Verdict:
    guard: str | None
    reason: str
    # True when a human must take over (a spent budget), not merely "not now" (a cooldown).
    escalate: bool = False

    @property
    def allowed(self) -> bool:
        return self.guard is None


ALLOWED = Verdict(None, "all guards passed")


def lookback(guards: Guards, policy: Policy, action: str) -> float | None:
    """How far back (seconds) the guards of a step look at earlier runs; None when no guard counts runs."""
    windows = [guards.cooldown] if guards.cooldown is not None else []
    if guards.budget is not None:
        windows.append(guards.budget.window)
    windows += [rule.window for rule in policy.blast_radius if action in rule.actions]
    return max(windows, default=None)


def check(
    *,
    playbook: str,
    action: str,
    params: ActionParams,
    at: float,
    guards: Guards,
    policy: Policy,
    history: Sequence[PastRun],
) -> Verdict:
    """The first guard that refuses this step, or ALLOWED. ``history`` holds the runs the action ledger counts
    (those admitted by the guards, whatever became of them) from ``at - lookback(...)`` on, every replica's."""
    target = params.target()
    for allow, scope in ((policy.allow, "policy"), (guards.allow, "playbook")):
        reason = allow.refuses(params) if allow is not None else None
        if reason is not None:
            return Verdict(f"allow ({scope})", reason)
    mine = sorted((r for r in history if r.playbook == playbook and r.target == target), key=lambda r: r.at)
    if guards.cooldown is not None:
        recent = [r for r in mine if at - r.at < guards.cooldown]
        if recent:
            return Verdict("cooldown", f"{playbook} last ran on {target} {at - recent[-1].at:g}s ago")
    if guards.budget is not None:
        used = sum(1 for r in mine if at - r.at < guards.budget.window)
        if used >= guards.budget.runs:
            return Verdict(
                "budget",
                f"remediation budget spent: {used} of {guards.budget.runs} runs on {target} within "
                f"{guards.budget.window:g}s; a human must take over",
                escalate=True,
            )
    for rule in policy.blast_radius:
        reason = _exceeds(rule, action, params, at, history)
        if reason is not None:
            return Verdict(f"blast_radius:{rule.name}", reason, escalate=True)
    return ALLOWED


def _exceeds(rule: BlastRadius, action: str, params: ActionParams, at: float, history: Sequence[PastRun]) -> str | None:
    if action not in rule.actions:
        return None
    target, namespace = params.target(), params.target_namespace()
    runs: Sequence[PastRun] = [
        r
        for r in history
        if r.at >= at - rule.window
        and r.action in rule.actions
        and (rule.per == "cluster" or (r.target == target if rule.per == "target" else r.namespace == namespace))
    ]
    group = {"target": target, "namespace": f"namespace {namespace}", "cluster": "the cluster"}[rule.per]
    if rule.max_runs is not None and len(runs) >= rule.max_runs:
        return f"{rule.name}: {len(runs)} of at most {rule.max_runs} runs on {group} within {rule.window:g}s"
    touched = {r.target for r in runs} | {target}
    if rule.max_targets is not None and len(touched) > rule.max_targets:
        return f"{rule.name}: would touch {len(touched)} targets in {group}, at most {rule.max_targets} allowed"
    return None
