"""A planned step as the action ledger keeps it: the request, the guards that must admit it, the verification to
run after it, and the target it changes; with the one serializer that turns the parts the request does not hold
into a JSON document and back.

Everything the engine must remember to carry a step out safely travels in this value and is stored with it before
the input that caused it is acknowledged, so that any replica, after any crash, finishes it exactly as the one that
planned it would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from engine.core.actions.catalogue import UnknownActionError, parse_params
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.verification import PendingVerification, Verify
from engine.domain.events import ActionRequest, SeriesKey


@dataclass(frozen=True)
class PlannedStep:
    """A request with what else its step declares: guards (the playbook's, overridden by the step's own) and the
    verification to run after it. ``failure`` says why a step could not be planned (a template or condition that
    failed for this incident): such a step is stored as failed, never run."""

    request: ActionRequest
    guards: Guards
    verification: PendingVerification | None = None
    failure: str | None = None

    @cached_property
    def _where(self) -> tuple[str, str | None]:
        return _target(self.request)

    @property
    def target(self) -> str:
        """What the step changes (``deployment:ns/name``, ``model:name``...): one change at a time per target."""
        return self._where[0]

    @property
    def namespace(self) -> str | None:
        return self._where[1]

    def document(self) -> dict[str, Any]:
        """What the request itself does not hold, as JSON-ready data (``from_document`` reads it back)."""
        verification = self.verification
        return {
            "guards": self.guards.model_dump(mode="json", by_alias=True, exclude_unset=True),
            "verification": None
            if verification is None
            else {
                "spec": verification.spec.model_dump(mode="json"),
                "series": {
                    "name": verification.incident_series.name,
                    "labels": list(verification.incident_series.labels),
                },
                "context": verification.context,
                "started_at": verification.started_at,
                "undo": verification.undo,
            },
            "failure": self.failure,
        }

    @classmethod
    def from_document(cls, request: ActionRequest, document: Mapping[str, Any]) -> PlannedStep:
        guards = Guards.model_validate(document.get("guards") or {})
        stored = document.get("verification")
        verification = None
        if stored is not None:
            series = SeriesKey(stored["series"]["name"], tuple((k, v) for k, v in stored["series"]["labels"]))
            verification = PendingVerification(
                request,
                Verify.model_validate(stored["spec"]),
                series,
                dict(stored["context"]),
                float(stored["started_at"]),
                bool(stored["undo"]),
            )
        return cls(request, guards, verification, document.get("failure"))


def _target(request: ActionRequest) -> tuple[str, str | None]:
    try:
        params = parse_params(request.action, request.params)
    except (UnknownActionError, ValidationError):
        # Parameters that do not validate fail the step before it touches anything; the step is its own target.
        return f"step:{request.id}", None
    return params.target(), params.target_namespace()
