"""What the on-call page shows of one incident, put together from the store's detail, the kept samples of its
signals and the correlation rules in force: its signals ranked from the most probable cause down, each with its
reasons and its picture, and its timeline as sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from engine.adapters.svg_drawing import Point
from engine.adapters.web.charts import Marker, signal_chart, window_of
from engine.adapters.web.sentences import Sentence, short_names, timeline_sentences
from engine.core.correlation import CorrelationRules
from engine.core.probable_cause import Cause, rank_causes
from engine.domain.views import IncidentDetail

# Pictures drawn per incident: the probable causes come first, and past these the ranking lists the rest in words
# (an incident holds up to a hundred signals; a page of a hundred pictures helps no one).
MAX_PICTURES = 12


@dataclass(frozen=True, slots=True)
class RankedSignal:
    cause: Cause
    # The metric name (or the full series where two signals share a name) and the labels as text.
    name: str
    labels: str
    chart: Markup | None


@dataclass(frozen=True, slots=True)
class IncidentView:
    detail: IncidentDetail
    signals: list[RankedSignal]
    sentences: list[Sentence]
    # Whether any samples were kept for the incident (else the pictures show only the recorded anomalies).
    sampled: bool


def incident_view(
    detail: IncidentDetail, points: Mapping[str, Sequence[Point]], rules: CorrelationRules
) -> IncidentView:
    incident = detail.incident
    causes = rank_causes(incident.signals, rules)
    markers = incident_markers(detail)
    window = window_of(incident.signals, points.values(), markers)
    known = recorded_values(detail)
    names = short_names([signal.series for signal in incident.signals])
    ranked = []
    for cause in causes:
        series = cause.signal.series
        text = str(series)
        chart = None
        if cause.rank <= MAX_PICTURES:
            chart = signal_chart(cause.signal, points.get(text, ()), window, markers, known.get(text, ()))
        labels = ", ".join(f"{key}={value}" for key, value in series.labels)
        ranked.append(RankedSignal(cause, names.get(text, text), labels, chart))
    sentences = timeline_sentences(detail.timeline, detail.actions, [s.series for s in incident.signals])
    return IncidentView(detail, ranked, sentences, sampled=any(points.values()))


def incident_markers(detail: IncidentDetail) -> list[Marker]:
    """The moments drawn across every picture: the incident's opening and resolution, and each action's request
    and outcome."""
    incident = detail.incident
    markers = [Marker(incident.opened_at, "opened")]
    if incident.resolved_at is not None:
        markers.append(Marker(incident.resolved_at, "resolved"))
    for action in detail.actions:
        step = f"step {action.step + 1} {action.action}"
        markers.append(Marker(action.requested_at, f"{step} requested", "action"))
        if action.finished_at is not None:
            markers.append(Marker(action.finished_at, f"{step} {action.status or 'finished'}", "action"))
    return markers


def recorded_values(detail: IncidentDetail) -> dict[str, list[Point]]:
    """The value of each anomaly the timeline recorded, by series: what a picture can show when no samples were
    kept."""
    found: dict[str, list[Point]] = {}
    for entry in detail.timeline:
        series, value, at = (entry.detail.get(key) for key in ("series", "value", "signal_at"))
        if isinstance(series, str) and isinstance(value, int | float) and isinstance(at, int | float):
            found.setdefault(series, []).append((float(at), float(value)))
    return found
