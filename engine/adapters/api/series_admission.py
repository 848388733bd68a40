"""New series of a pushed request admitted within the engine's series bound, without holding the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from engine.core.detection import SeriesAdmission
from engine.domain.batches import parts
from engine.domain.events import MetricSample, SeriesKey

# New series are admitted this many at a time, the event loop free between: making room for fifty thousand new
# series at once held it (and /healthz) for a tenth of a second and more.
ADMISSION_CHUNK = 1000


async def admit_series(series: SeriesAdmission, samples: Sequence[MetricSample]) -> set[SeriesKey]:
    """The series of ``samples`` that the engine refused; those it took have their room made."""
    # In the order sent, so that which series are refused does not depend on hashing.
    keys = list(dict.fromkeys(sample.series for sample in samples))
    await series.make_room(keys)
    refused: set[SeriesKey] = set()
    for index, part in enumerate(parts(keys, ADMISSION_CHUNK)):
        if index:
            await asyncio.sleep(0)
        refused |= series.admit(part)
    return refused
