"""The table of detector families by name: what the engine, the CLI and the benchmarks choose from.

Each entry says how to build the one-series and the batch shape of a family from keyword hyper-parameters.
The table is a constant; nothing registers itself at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from detectors import ensemble, seasonal_likelihood, zscore
from detectors.base import BatchDetector, Detector


class UnknownDetectorError(LookupError):
    """Raised for a detector name that is not in the table; the message lists the known names."""


class DetectorLibraryMissingError(UnknownDetectorError):
    """Raised for a family whose library (river, scikit-learn, SciPy) is not installed; the message says how to
    install it. A kind of UnknownDetectorError, so that every caller reports it as it reports an unknown name."""


# The libraries of the families named for ``_on_use``: the ``detectors`` extra.
EXTRA_LIBRARIES = frozenset({"river", "sklearn", "scipy"})
INSTALL_EXTRA = "pip install 'aiops-engine[detectors]' (the engine image: build it with --build-arg EXTRAS=detectors)"


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


def _on_use(module: str, factory: str) -> Callable[..., Any]:
    """``detectors.<module>.<factory>``, imported when first called: the families on river, scikit-learn and SciPy
    cost a process 100 MB and more of imports, and most engines use none of them. Those libraries are the
    ``detectors`` extra: where it is not installed, building such a family says how to install it."""

    def build(*args: Any, **params: Any) -> Any:
        try:
            return getattr(importlib.import_module(f"detectors.{module}"), factory)(*args, **params)
        except ModuleNotFoundError as exc:
            library = (exc.name or "").partition(".")[0]
            if library not in EXTRA_LIBRARIES:
                raise
            raise DetectorLibraryMissingError(
                f"this detector family needs {library}, which is not installed: {INSTALL_EXTRA}"
            ) from exc

    build.__qualname__ = build.__name__ = f"{module}.{factory}"
    return build


# One entry per family: numpy-only families are imported here, the others named for ``_on_use``.
_KINDS: tuple[DetectorKind, ...] = (
    DetectorKind(
        name="default",
        summary="seasonal-aware z-score raised by its anomaly likelihood, one detection per peak (chosen on NAB)",
        make_one=seasonal_likelihood.seasonal_likelihood,
        make_batch=seasonal_likelihood.seasonal_likelihood_batch,
        default_threshold=0.6,
    ),
    DetectorKind(
        name="rarity",
        summary="distances from a seasonal and a fast baseline, rated by their rarity for the series (0.5: one in "
        "10^4), once per peak",
        make_one=ensemble.rarity,
        make_batch=ensemble.rarity_batch,
        default_threshold=0.5,
    ),
    DetectorKind(
        name="ewma",
        summary="z-score against an exponentially weighted mean and variance",
        make_one=zscore.ewma,
        make_batch=zscore.ewma_batch,
        default_threshold=0.7,
    ),
    DetectorKind(
        name="robust_zscore",
        summary="z-score against an online median and MAD (outliers barely move the baseline)",
        make_one=zscore.robust_zscore,
        make_batch=zscore.robust_zscore_batch,
        default_threshold=0.7,
    ),
    DetectorKind(
        name="seasonal_zscore",
        summary="z-score against an hour-of-day profile where it fits better than an EWMA, else the EWMA",
        make_one=zscore.seasonal_zscore,
        make_batch=zscore.seasonal_zscore_batch,
        default_threshold=0.7,
    ),
    DetectorKind(
        name="hst",
        summary="river Half-Space Trees on the min-max scaled value (or a fixed value_range)",
        make_one=_on_use("river_adapters", "half_space_trees"),
        make_batch=_on_use("river_adapters", "half_space_trees_batch"),
        default_threshold=0.5,
    ),
    DetectorKind(
        name="adwin",
        summary="river ADWIN change detector: 1 on the point where the mean is found to have changed",
        make_one=_on_use("river_adapters", "adwin"),
        make_batch=_on_use("river_adapters", "adwin_batch"),
        default_threshold=0.5,
    ),
    DetectorKind(
        name="page_hinkley",
        summary="river Page-Hinkley change detector: 1 on the point where a lasting shift is found",
        make_one=_on_use("river_adapters", "page_hinkley"),
        make_batch=_on_use("river_adapters", "page_hinkley_batch"),
        default_threshold=0.5,
    ),
    DetectorKind(
        name="isolation_forest",
        summary="scikit-learn Isolation Forest on [jump, distance from recent mean], refitted on a bounded history",
        make_one=_on_use("isolation_forest", "isolation_forest"),
        make_batch=_on_use("isolation_forest", "isolation_forest_batch"),
        default_threshold=0.7,
    ),
    DetectorKind(
        name="psi",
        summary="input/output drift: Population Stability Index of a recent window against a reference window",
        make_one=_on_use("drift", "psi"),
        make_batch=_on_use("drift", "psi_batch"),
        default_threshold=0.5,
    ),
    DetectorKind(
        name="ks",
        summary="input/output drift: Kolmogorov-Smirnov test of a recent window against a reference window",
        make_one=_on_use("drift", "ks"),
        make_batch=_on_use("drift", "ks_batch"),
        default_threshold=0.999,
    ),
)

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
