"""The incident list's filters and pages for the on-call page: read from the query string, checked, and written
back into links, so that every link of the list (next page, first page) keeps the filters it was reached with.

A value the list does not know (a state or severity that does not exist, a cursor the page did not make, a model
name too long to be one) is a problem the page shows in words; it never reaches the store. The words are fixed:
like the page's other messages, they never repeat what a link put in the query, so a link cannot make the page say
anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from engine.adapters.api.cursors import BadCursorError, decode_cursor, encode_cursor
from engine.domain.events import Incident, IncidentState, SeriesKey, Severity

PAGE_SIZE = 50
# Longer than any model name a label holds in practice, short enough to keep the query and the links small.
MAX_MODEL = 200
STATES = tuple(state.value for state in IncidentState)
# The API's limit on a cursor's length.
_MAX_CURSOR = 200
SEVERITIES = tuple(severity.label for severity in sorted(Severity, reverse=True))


@dataclass(frozen=True, slots=True)
class ListFilter:
    state: IncidentState | None = None
    severity: Severity | None = None
    model: str | None = None
    # (opened_at, id) of the last incident of the previous page.
    before: tuple[float, str] | None = None
    cursor: str | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def filtered(self) -> bool:
        return (self.state, self.severity, self.model) != (None, None, None)

    def query(self, *, cursor: str | None = None) -> str:
        """This filter as a query string ("?state=open&model=fraud"), on the page after ``cursor`` if given."""
        values = {
            "state": self.state.value if self.state else None,
            "severity": self.severity.label if self.severity else None,
            "model": self.model,
            "cursor": cursor,
        }
        kept = {key: value for key, value in values.items() if value}
        return f"?{urlencode(kept)}" if kept else ""

    def with_model(self, model: str) -> str:
        """The query of this filter for ``model`` instead, from the first page."""
        return replace(self, model=model, before=None, cursor=None).query()

    def next_page(self, incidents: list[Incident]) -> str | None:
        """The query of the page after ``incidents``, if that was a full page (there may be more)."""
        if len(incidents) < PAGE_SIZE:
            return None
        return self.query(cursor=encode_cursor(incidents[-1]))


def read_filter(params: Mapping[str, str]) -> ListFilter:
    """The list filter a query string asks for; each value it cannot use is left out and named in ``problems`` (the
    page then lists nothing, rather than more than was asked for)."""
    problems = []
    state = severity = None
    model = cursor = None
    before = None
    if text := params.get("state", "").strip():
        try:
            state = IncidentState(text.lower())
        except ValueError:
            problems.append(f"Unknown state: choose {', '.join(STATES)}.")
    if text := params.get("severity", "").strip():
        if text.lower() in SEVERITIES:
            severity = Severity.parse(text)
        else:
            problems.append(f"Unknown severity: choose {', '.join(SEVERITIES)}.")
    if text := params.get("model", "").strip():
        if len(text) > MAX_MODEL:
            problems.append(f"A model name is at most {MAX_MODEL} characters long.")
        else:
            model = text
    if text := params.get("cursor", "").strip():
        try:
            if len(text) > _MAX_CURSOR:
                raise BadCursorError(text)
            before = decode_cursor(text)
            cursor = text
        except BadCursorError:
            problems.append("That page link is not one this list made: start again from the first page.")
    return ListFilter(state, severity, model, before, cursor, tuple(problems))


def labels_besides_model(series: SeriesKey) -> str:
    """The labels of an incident's series that its model column does not show, as text."""
    return ", ".join(f"{key}={value}" for key, value in series.labels if key != "model")
