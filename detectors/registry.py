"""The table of detector families by name: what the engine, the CLI and the benchmarks choose from.

Each entry says how to build the one-series and the batch shape of a family from keyword hyper-parameters.
The table is a constant; nothing registers itself at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from detectors.base import BatchDetector, Detector


class UnknownDetectorError(LookupError):
    """Raised for a detector name that is not in the table; the message lists the known names."""


@dataclass(frozen=True)
class DetectorKind:
    """How to build one detector family."""

    name: str
    summary: str
    make_one: Callable[..., Detector]
    # Called as make_batch(capacity, **params).
    make_batch: Callable[..., BatchDetector]
    # Score at or above which a point counts as a detection when the user sets no threshold.
    default_threshold: float


# One entry per family; import the family's module at the top of this file and add its entry here.
_KINDS: tuple[DetectorKind, ...] = ()

_TABLE: Mapping[str, DetectorKind] = MappingProxyType({kind.name: kind for kind in _KINDS})

DEFAULT_DETECTOR = "default"


def names() -> tuple[str, ...]:
    """Known detector names, sorted."""
    return tuple(sorted(_TABLE))


def get(name: str) -> DetectorKind:
    """The family called ``name``."""
    try:
        return _TABLE[name]
    except KeyError:
        raise UnknownDetectorError(f"unknown detector {name!r}; known: {', '.join(names())}") from None


def build_one(name: str, **params: Any) -> Detector:
    """A fresh one-series detector of family ``name``."""
    return get(name).make_one(**params)


def build_batch(name: str, capacity: int, **params: Any) -> BatchDetector:
    """A fresh batch detector of family ``name`` with ``capacity`` slots."""
    return get(name).make_batch(capacity, **params)
