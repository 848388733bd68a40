"""Layouts of OTLP requests already read, so that a request laid out as an earlier one is read without a walk.

A producer that exports the same series at every interval (an SDK's periodic reader, a collector scraping the same
targets) sends requests whose bytes differ only in the payloads of the points' fixed fields: start time, time and
value, eight bytes each. Once a request has been read whole as columns (every point a gauge or sum in upb's usual
layout, every series known; no histogram, no refused series, no point without a value), its layout is kept: its
bytes, which of them are those payloads, where each point lies, each point's series and what it becomes. A later
request of the same length whose other bytes are all the same is the same request with other times and values: any
eight bytes are a valid fixed64 or double, so its parse would succeed and give the same structure, and only the
payloads need gathering. Anything else is read as before (``engine.adapters.otlp.metrics``).

Kept layouts are bounded in number and in bytes (the one used longest ago is forgotten first); a body is compared
with the layout of its length only, eight bytes at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

_WORD = 8
_DEFAULT_MAX_LAYOUTS = 8
_DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    """A request read before: its points (``starts``/``ends`` in its bytes), their series indexes and kinds, and
    how many points it held."""

    words: np.ndarray
    kept: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    series: np.ndarray
    kinds: np.ndarray
    points: int

    def matches(self, body: bytes) -> bool:
        """Whether ``body`` (of this layout's length) differs from the request read only in the payloads."""
        difference = np.bitwise_xor(_words(body), self.words)
        difference &= self.kept
        return not difference.any()


class Layouts:
    """Layouts by body length: at most ``max_layouts``, of bodies of at most ``max_bytes`` in all."""

    def __init__(self, *, max_layouts: int = _DEFAULT_MAX_LAYOUTS, max_bytes: int = _DEFAULT_MAX_BYTES) -> None:
        self._layouts: OrderedDict[int, Layout] = OrderedDict()
        self._max_layouts = max_layouts
        self._max_bytes = max_bytes
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._layouts)

    def find(self, body: bytes) -> Layout | None:
        """The layout ``body`` repeats, if one is kept."""
        layout = self._layouts.get(len(body))
        if layout is None or not layout.matches(body):
            return None
        self._layouts.move_to_end(len(body))
        return layout

    def keep(
        self,
        body: bytes,
        *,
        starts: list[int],
        ends: list[int],
        payloads: np.ndarray,
        series: np.ndarray,
        kinds: np.ndarray,
    ) -> None:
        """Keep the layout of ``body``, whose fixed fields' payloads start at ``payloads`` (eight bytes each)."""
        size = len(body)
        if size > self._max_bytes:
            return
        self.forget(size)
        while self._layouts and (len(self._layouts) >= self._max_layouts or self._bytes + size > self._max_bytes):
            self.forget(next(iter(self._layouts)))
        kept = np.full(_padded(size), 0xFF, dtype=np.uint8)
        kept[(payloads[:, None] + np.arange(_WORD)).ravel()] = 0
        self._layouts[size] = Layout(
            words=_words(body).copy(),
            kept=kept.view(np.uint64),
            starts=np.asarray(starts, dtype=np.int64),
            ends=np.asarray(ends, dtype=np.int64),
            series=series,
            kinds=kinds,
            points=len(starts),
        )
        self._bytes += size

    def forget(self, size: int) -> None:
        """Forget the layout of bodies of ``size`` bytes, if one is kept."""
        if self._layouts.pop(size, None) is not None:
            self._bytes -= size

    def clear(self) -> None:
        self._layouts.clear()
        self._bytes = 0


def _padded(size: int) -> int:
    return size + (-size) % _WORD


def _words(body: bytes) -> np.ndarray:
    """``body`` as 64-bit words, zero-padded to a whole word."""
    padding = (-len(body)) % _WORD
    return np.frombuffer(body + bytes(padding) if padding else body, dtype=np.uint64)
