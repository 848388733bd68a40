"""An incident's timeline as sentences for the on-call page: what the engine saw and what people and playbooks
did, in time order, in words rather than the stored details.

The sentences are plain text: the page's templates escape them like any other value (comments and labels come
from outside). Comments are cut to ``MAX_COMMENT`` characters. A kind this module does not know is still shown,
as its name and its details' plain values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.domain.events import SeriesKey
from engine.domain.views import ActionRecord, TimelineEntry

MAX_COMMENT = 500
# Plain values of an unknown kind's details shown at most, each cut to this many characters.
_MAX_FIELDS = 6
_MAX_VALUE = 80


@dataclass(frozen=True, slots=True)
class Sentence:
    at: float
    # "2026-03-03 21:00" for the first sentence and at each new day, else "21:00" (UTC).
    when: str
    text: str
    # Who or what acted: "engine", "person" or "action" (the page styles them apart).
    source: str


def timeline_sentences(
    timeline: Sequence[TimelineEntry], actions: Sequence[ActionRecord] = (), series: Sequence[SeriesKey] = ()
) -> list[Sentence]:
    """The timeline and the actions' requests and outcomes as sentences, oldest first. ``series`` are the
    incident's signals: a series is named by its metric name where no other signal has the same name."""
    names = short_names([*series, *_series_in(timeline)])
    told = [(entry.at, *_entry(entry, names)) for entry in timeline]
    for action in actions:
        told.append((action.requested_at, _requested(action), "action"))
        if action.finished_at is not None and action.status is not None:
            told.append((action.finished_at, _finished(action), "action"))
    told.sort(key=lambda item: item[0])
    sentences = []
    day = ""
    for at, text, source in told:
        moment = datetime.fromtimestamp(at, UTC) if math.isfinite(at) else datetime.fromtimestamp(0, UTC)
        when = moment.strftime("%H:%M")
        if moment.strftime("%Y-%m-%d") != day:
            day = moment.strftime("%Y-%m-%d")
            when = f"{day} {when}"
        sentences.append(Sentence(at, when, text, source))
    return sentences


def short_names(series: Sequence[SeriesKey]) -> dict[str, str]:
    """How each series (by its text) is named in sentences: its metric name (an alert's ``alertname``) where that
    is unique among ``series``, else its full text."""

    def short(key: SeriesKey) -> str:
        return key.label_map.get("alertname", key.name) if key.name == "ALERTS" else key.name

    counts: dict[str, int] = {}
    unique = list(dict.fromkeys(series))
    for key in unique:
        counts[short(key)] = counts.get(short(key), 0) + 1
    return {str(key): short(key) if counts[short(key)] == 1 else str(key) for key in unique}


def _series_in(timeline: Sequence[TimelineEntry]) -> list[SeriesKey]:
    found = []
    for entry in timeline:
        texts = [entry.detail.get("series"), *(entry.detail.get("quiet") or [])]
        for text in texts:
            if isinstance(text, str):
                try:
                    found.append(SeriesKey.parse(text))
                except ValueError:
                    continue
    return found


def _entry(entry: TimelineEntry, names: Mapping[str, str]) -> tuple[str, str]:
    """An entry's sentence and its source."""
    detail = entry.detail
    kind = entry.kind
    by = str(detail.get("by", "")) or "someone"
    said = _said(detail.get("comment"))
    if "by" in detail and kind in _DECISIONS:
        source = "engine" if by == "engine" else "person"
        return f"{by} {_DECISIONS[kind]}{said}", source
    if kind in ("step approved", "step rejected"):
        verb = "approved" if kind == "step approved" else "rejected"
        return f"{by} {verb} the step {_cut(detail.get('comment'))}", "person"
    if kind == "snoozed":
        until = detail.get("until")
        until_text = f" until {_clock(until)}" if isinstance(until, int | float) else ""
        return f"{by} snoozed the incident's notifications{until_text}{said}", "person"
    if kind == "commented":
        return f"{by} commented{said}", "person"
    if kind == "ack timed out":
        return f"the acknowledgement timed out{said}", "engine"
    if kind in ("opened", "joined", "updated"):
        return _signal_sentence(kind, detail, names), "engine"
    if kind == "quieted":
        quiet = [names.get(str(text), str(text)) for text in detail.get("quiet") or []]
        which = ", ".join(quiet) if quiet else "a signal"
        return f"{which} went quiet; other signals are still anomalous", "engine"
    if kind == "resolved":
        if "alert" in detail:
            return f"resolved: alert {detail['alert']} {detail.get('alert_status', 'resolved')}", "engine"
        return "resolved: every signal quiet", "engine"
    return f"{kind}{_plain(detail)}", "engine"


_DECISIONS = {
    "acknowledged": "acknowledged",
    "unacknowledged": "took back the acknowledgement",
    "resolved": "resolved the incident",
    "ack timed out": "re-opened the incident: its acknowledgement timed out",
}


def _signal_sentence(kind: str, detail: Mapping[str, Any], names: Mapping[str, str]) -> str:
    if "alert" in detail and "series" not in detail:
        verb = {"opened": "opened the incident", "joined": "joined", "updated": "fired again"}[kind]
        return f"alert {detail['alert']} {verb} ({detail.get('alert_status', 'firing')})"
    text = str(detail.get("series", "a signal"))
    name = names.get(text, text)
    verb = {"opened": "opened the incident", "joined": "joined", "updated": "still anomalous"}[kind]
    figures = []
    if isinstance(detail.get("value"), int | float):
        figures.append(f"value {_number(detail['value'])}")
    if isinstance(detail.get("score"), int | float):
        figures.append(f"score {detail['score']:.3f}")
    if detail.get("detector") not in (None, "default"):
        figures.append(f"detector {detail['detector']}")
    if kind == "opened" and detail.get("severity"):
        figures.append(f"severity {detail['severity']}")
    return f"{name} {verb}" + (f" ({', '.join(figures)})" if figures else "")


def _requested(action: ActionRecord) -> str:
    return f"playbook {action.playbook} asked for step {action.step + 1}, {action.action} ({action.mode.value})"


def _finished(action: ActionRecord) -> str:
    outcome = f"step {action.step + 1} of {action.playbook}, {action.action}: {action.status}"
    return outcome + (f" by {action.decided_by}" if action.decided_by else "")


def _said(comment: object) -> str:
    return f": “{_cut(comment)}”" if comment else ""


def _cut(text: object, limit: int = MAX_COMMENT) -> str:
    words = "" if text is None else str(text)
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _plain(detail: Mapping[str, Any]) -> str:
    fields = [
        f"{key} {_cut(value, _MAX_VALUE)}"
        for key, value in list(detail.items())[:_MAX_FIELDS]
        if isinstance(value, str | int | float | bool)
    ]
    return f" ({', '.join(fields)})" if fields else ""


def _number(value: float) -> str:
    if not math.isfinite(value) or abs(value) < 10_000:
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return f"{value:,.0f}"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if math.isfinite(at) else "?"
