"""The incident list's hand-written JSON must be exactly what the published response model would produce."""

import dataclasses

import pytest
from pydantic import TypeAdapter

from engine.adapters.api.schemas import IncidentOut, incident_page_json
from engine.domain.events import IncidentState, SeriesKey, Severity
from tests.engine.factories import incident

PAGE = TypeAdapter(list[IncidentOut])


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"resolved_at": 1_764_000_123.25, "state": IncidentState.RESOLVED},
        {"snoozed_until": 1_764_009_999.000001, "state": IncidentState.ACKNOWLEDGED},
        {"opened_at": 0.5, "last_signal_at": 1_764_000_000.0, "peak_score": 1.0, "severity": Severity.CRITICAL},
        {"series": SeriesKey.of("latency", {"model": 'fraud "v2"', "zone": "é"}), "title": "<b>ünïcode</b>"},
    ],
)
def test_page_json_is_what_the_response_model_writes(changes: dict[str, object]) -> None:
    page = [dataclasses.replace(incident(), **changes), incident()]

    assert incident_page_json(page) == PAGE.dump_json([IncidentOut.of(item) for item in page])


def test_an_empty_page_is_an_empty_list() -> None:
    assert incident_page_json([]) == b"[]"
