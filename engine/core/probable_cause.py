"""Ranks an incident's signals by how likely each is the cause of the problem, with the reasons for each rank.

Three kinds of evidence, in order of weight:

1. **Known relations** between signal kinds (``engine.core.correlation``): a signal whose kind is known to move
   the kinds of other signals of the incident explains them if it began no later than they did, or, for a kind that
   grows slowly (``slow_kinds``), at most ``cause_lead`` after them (a memory leak is detected after the latency it
   causes). A signal that another signal of the
   incident explains is an effect and ranks after it.
2. **Onset order**: the problem shows first where it starts; the earlier signal ranks first among equals.
3. **Strength**: the higher peak score breaks the remaining ties.

The ranking is a pure function of the signals and the rules, so the API, the page, the playbooks and the incident
events on Kafka all show the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.core.correlation import NO_RULES, CorrelationRules
from engine.domain.events import Signal
from engine.domain.signal_documents import signal_document


@dataclass(frozen=True)
class Cause:
    """One signal's place in the ranking: 1 is the probable cause."""

    rank: int
    signal: Signal
    kind: str | None
    reasons: tuple[str, ...]
    # The series (as text) this signal is taken to explain, and the one that explains it, if any.
    explains: tuple[str, ...] = ()
    explained_by: str | None = None


def rank_causes(signals: Sequence[Signal], rules: CorrelationRules = NO_RULES) -> list[Cause]:
    """``signals`` ordered from the most to the least probable cause, each with why it stands there."""
    kinds = [rules.kind_of(signal.series) for signal in signals]
    explains: list[list[int]] = [[] for _ in signals]
    explained_by: list[list[int]] = [[] for _ in signals]
    for i, (cause, cause_kind) in enumerate(zip(signals, kinds, strict=True)):
        effects = rules.effects.get(cause_kind or "", frozenset())
        lead = rules.lead(cause_kind)
        for j, (effect, effect_kind) in enumerate(zip(signals, kinds, strict=True)):
            if i != j and effect_kind in effects and cause.first_at <= effect.first_at + lead:
                explains[i].append(j)
                explained_by[j].append(i)
    # An effect of a signal that it does not explain in return (a cycle: latency <-> errors at once) ranks after
    # it; among the rest, the one that explains most, then the first to begin, then the strongest.
    is_effect = [any(i not in explained_by[j] for j in explained_by[i]) for i in range(len(signals))]
    # Effects among themselves follow their onsets: what they explain further down the chain is no evidence of
    # being the cause.
    order = sorted(
        range(len(signals)),
        key=lambda i: (
            is_effect[i],
            0 if is_effect[i] else -len(explains[i]),
            signals[i].first_at,
            -signals[i].peak_score,
            str(signals[i].series),
        ),
    )
    first_onset = min((signal.first_at for signal in signals), default=0.0)
    strongest = max((signal.peak_score for signal in signals), default=0.0)
    causes = []
    for rank, i in enumerate(order, start=1):
        signal = signals[i]
        reasons = []
        for j in explains[i]:
            reasons.append(
                f"{_kind(kinds[i])} is a known cause of {_kind(kinds[j])} ({_name(signals[j])}), "
                f"{_relative(signal.first_at, signals[j].first_at)}"
            )
        for j in explained_by[i]:
            if i not in explained_by[j]:
                reasons.append(f"likely an effect of {_name(signals[j])} ({_kind(kinds[j])} moves {_kind(kinds[i])})")
        if len(signals) > 1 and signal.first_at == first_onset:
            reasons.append(f"began first, at {_clock(signal.first_at)}")
        elif len(signals) > 1:
            reasons.append(f"began {_duration(signal.first_at - first_onset)} after the first signal")
        if len(signals) > 1 and signal.peak_score == strongest:
            reasons.append(f"strongest signal (score {signal.peak_score:.3f})")
        if len(signals) == 1:
            reasons.append("the incident's only signal")
        causes.append(
            Cause(
                rank=rank,
                signal=signal,
                kind=kinds[i],
                reasons=tuple(reasons),
                explains=tuple(str(signals[j].series) for j in explains[i]),
                explained_by=next((str(signals[j].series) for j in explained_by[i] if i not in explained_by[j]), None),
            )
        )
    return causes


def cause_documents(signals: Sequence[Signal], rules: CorrelationRules = NO_RULES) -> list[dict[str, Any]]:
    """The ranking as JSON-ready documents (each signal's document with its rank, kind and reasons): the one form
    the API, the page and the incident events on Kafka show."""
    return [
        {
            **signal_document(cause.signal),
            "rank": cause.rank,
            "kind": cause.kind,
            "reasons": list(cause.reasons),
            "explains": list(cause.explains),
            "explained_by": cause.explained_by,
        }
        for cause in rank_causes(signals, rules)
    ]


def _kind(kind: str | None) -> str:
    return (kind or "unknown kind").replace("_", " ")


def _name(signal: Signal) -> str:
    series = signal.series
    return series.label_map.get("alertname", series.name) if series.name == "ALERTS" else series.name


def _relative(at: float, other: float) -> str:
    if at == other:
        return "and began with it"
    if at < other:
        return f"and began {_duration(other - at)} before it"
    return f"though detected {_duration(at - other)} after it"


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
