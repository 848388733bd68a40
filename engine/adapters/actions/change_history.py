"""The record of the engine's own changes, kept on the Kubernetes object it changed.

One annotation holds the last few changes as JSON: the request's idempotency key, what the field was before and
what it became. It is written in the same update as the change itself, so the two cannot disagree: after a crash
the engine reads the object to learn whether its change was made, and an undo restores exactly what that change
replaced, even when another change came in between.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

ANNOTATION = "aiops-engine.io/changes"
KEEP = 10


@dataclass(frozen=True)
class Change:
    key: str
    action: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    at: float


def changes(annotations: Mapping[str, str] | None) -> list[Change]:
    raw = (annotations or {}).get(ANNOTATION)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []  # someone edited the annotation by hand; the engine forgets its history rather than crash
    return [
        Change(**entry) for entry in entries if isinstance(entry, dict) and set(entry) == set(Change.__annotations__)
    ]


def find(annotations: Mapping[str, str] | None, key: str) -> Change | None:
    return next((change for change in changes(annotations) if change.key == key), None)


def with_change(annotations: Mapping[str, str] | None, change: Change) -> dict[str, str]:
    """The annotations with ``change`` appended (the oldest dropped beyond KEEP)."""
    older = [c for c in changes(annotations) if c.key != change.key]
    kept = [*older[-(KEEP - 1) :], change]
    return {**(annotations or {}), ANNOTATION: json.dumps([asdict(c) for c in kept], sort_keys=True)}
