"""Correlation rules: which signals belong to one problem, and what kind of signal each series is.

One problem moves several series (a bad rollout moves errors and latency; a GPU memory leak moves memory, then
latency, then utilisation), and each series' anomalies would otherwise open an incident of their own. Rules say
which labels name the workload a series belongs to (``group_by``), with a label map because exporters disagree
(a GPU series' ``deployment`` and a latency series' ``model`` can name the same workload). Signals of one group
share one incident; a series that lacks a ``group_by`` label is a group of its own, as without rules.

Kinds (latency, errors, traffic, ...) come from metric names and feed the probable-cause ranking
(``engine.core.probable_cause``) with the relations between them (traffic -> latency, GPU memory -> latency, a
registry alias change -> errors). Both have built-in defaults that a rules file may extend or replace.

The rules file is ``_correlation.yaml`` in the playbook directory, validated like a playbook.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.playbooks.expressions import Duration
from engine.domain.events import SeriesKey, is_label_name

GROUP_PREFIX = "group:"
ALERTS_METRIC = "ALERTS"
# Kinds tried in order (the first whose pattern matches the metric name wins): specific before generic, so that
# ``model_request_errors_ratio`` is errors and ``model_request_latency_seconds`` latency, not traffic.
DEFAULT_KINDS: dict[str, list[str]] = {
    "alias_change": ["*alias*", "*model_version*", "*registry_version*", "*rollout*", "*deployment_generation*"],
    "gpu_memory": ["*gpu*mem*", "*DCGM_FI_DEV_FB_USED*", "*fb_used*"],
    "gpu_utilisation": ["*gpu*util*", "*DCGM_FI_DEV_GPU_UTIL*", "*sm_active*"],
    "errors": ["*error*", "*5xx*", "*fail*", "*exception*"],
    "drift": ["*drift*", "*psi*", "*_kl_*", "*divergence*"],
    "latency": ["*latency*", "*duration*", "*response_time*", "*_seconds"],
    "traffic": ["*request*", "*rps*", "*qps*", "*throughput*", "*traffic*", "*_total"],
    "saturation": ["*cpu*", "*memory*", "*queue*", "*saturation*"],
}
# Kinds that grow slowly (a leak, a creeping saturation, drift): detected late, after the effects they cause.
DEFAULT_SLOW_KINDS = ("gpu_memory", "saturation", "drift")
# cause kind -> the kinds it is known to move.
DEFAULT_RELATIONS: dict[str, list[str]] = {
    "alias_change": ["errors", "latency", "drift"],
    "traffic": ["latency", "errors", "gpu_utilisation", "saturation"],
    "gpu_memory": ["latency", "errors", "gpu_utilisation"],
    "saturation": ["latency", "errors"],
    "gpu_utilisation": ["latency"],
    "drift": ["errors"],
    "latency": ["errors"],
}
# Incident fingerprints are stored in a column of 512 characters.
_MAX_FINGERPRINT = 480
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class CorrelationRules(BaseModel):
    """The content of ``_correlation.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_by: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="topology labels whose values name one problem's scope, e.g. [namespace, workload]; empty: "
        "every series is a group of its own",
    )
    labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="for a group_by label, the series labels that may carry it, first present wins, e.g. "
        "workload: [model, deployment, service]; a group_by label missing here is read as itself",
    )
    window: Duration | None = Field(
        default=None,
        description="how long a signal of a grouped incident may stay normal before it is quiet, at least the "
        "engine's incident resolve-after (the default); the incident resolves when all its signals are quiet, and "
        "the group's next signal opens a new one",
    )
    alerts: Literal["join", "separate"] = Field(
        default="join", description="join: a firing Alertmanager alert joins its group's incident by its labels"
    )
    kinds: dict[str, list[str]] = Field(
        default_factory=dict,
        description="signal kinds by metric-name glob (shell-style), tried before the built-in kinds",
    )
    relations: dict[str, list[str]] = Field(
        default_factory=dict,
        description="cause kind -> the kinds it moves, added to the built-in relations",
    )
    cause_lead: Duration = Field(
        default=600.0,
        description="a known cause of a slow kind still explains an effect detected up to this long before it (a "
        "slow leak is detected after the latency it causes)",
    )
    slow_kinds: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SLOW_KINDS),
        max_length=64,
        description="kinds that grow slowly and are detected late (the lead applies to them); any other cause must "
        "begin no later than its effect",
    )

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, names: list[str]) -> list[str]:
        bad = [name for name in names if not is_label_name(name)]
        if bad:
            raise ValueError(f"not label names: {', '.join(bad)}")
        if len(set(names)) != len(names):
            raise ValueError("a label is listed twice")
        return names

    @field_validator("labels")
    @classmethod
    def _label_map(cls, mapping: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, names in mapping.items():
            bad = [name for name in [key, *names] if not is_label_name(name)]
            if bad:
                raise ValueError(f"not label names: {', '.join(bad)}")
            if not names or len(names) > 16:
                raise ValueError(f"{key}: give 1 to 16 series labels")
        return mapping

    @field_validator("kinds", "relations")
    @classmethod
    def _kind_names(cls, mapping: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(mapping) > 64:
            raise ValueError("at most 64 kinds")
        for key, values in mapping.items():
            if not _KIND_NAME.match(key):
                raise ValueError(f"{key!r}: a kind is lowercase letters, digits and _")
            if not values or len(values) > 32 or any(not value or len(value) > 200 for value in values):
                raise ValueError(f"{key}: give 1 to 32 entries of 1 to 200 characters")
        return mapping

    @model_validator(mode="after")
    def _known(self) -> CorrelationRules:
        unused = sorted(set(self.labels) - set(self.group_by))
        if unused:
            raise ValueError(f"labels maps {', '.join(unused)}, which group_by does not list")
        known = set(DEFAULT_KINDS) | set(self.kinds)
        unknown = sorted({kind for cause, effects in self.relations.items() for kind in [cause, *effects]} - known)
        if unknown:
            raise ValueError(f"relations name unknown kinds: {', '.join(unknown)}")
        return self

    @cached_property
    def _kind_patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        ordered = list(self.kinds.items()) + [(k, v) for k, v in DEFAULT_KINDS.items() if k not in self.kinds]
        return [
            (kind, re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns), re.IGNORECASE))
            for kind, patterns in ordered
        ]

    @cached_property
    def effects(self) -> dict[str, frozenset[str]]:
        """cause kind -> the kinds it moves (built-in and configured)."""
        merged = {cause: set(effects) for cause, effects in DEFAULT_RELATIONS.items()}
        for cause, effects in self.relations.items():
            merged.setdefault(cause, set()).update(effects)
        return {cause: frozenset(effects) for cause, effects in merged.items()}

    def lead(self, kind: str | None) -> float:
        """How long before a cause of ``kind`` its effect may be detected and still be explained by it."""
        return self.cause_lead if kind in self.slow_kinds else 0.0

    def kind_of(self, series: SeriesKey) -> str | None:
        """The signal kind of ``series`` (an alert's by its alert name), None when no pattern matches."""
        name = series.label_map.get("alertname", series.name) if series.name == ALERTS_METRIC else series.name
        return next((kind for kind, pattern in self._kind_patterns if pattern.match(name)), None)

    def group_of(self, series: SeriesKey) -> str | None:
        """The fingerprint of the group ``series`` belongs to; None when it lacks a ``group_by`` label (or there
        are no rules) and so is a group of its own. Alerts are grouped by their labels unless ``alerts`` says
        separate."""
        if not self.group_by or (series.name == ALERTS_METRIC and self.alerts == "separate"):
            return None
        labels = series.label_map
        values = {}
        for key in self.group_by:
            value = next((labels[name] for name in self.labels.get(key, [key]) if labels.get(name)), None)
            if value is None:
                return None
            values[key] = value
        # The group's labels in the form of a series key (escaped, so that no two groups read alike).
        text = GROUP_PREFIX + str(SeriesKey.of("workload", values))
        if len(text) > _MAX_FINGERPRINT:
            return GROUP_PREFIX + hashlib.sha256(text.encode()).hexdigest()
        return text

    def resolve_after(self, default_s: float) -> float:
        """How long a grouped signal stays normal before it is quiet: ``window``, never shorter than the engine's
        own resolve-after (``default_s``), which may be set longer to keep every incident open."""
        return default_s if self.window is None else max(self.window, default_s)


NO_RULES = CorrelationRules()
