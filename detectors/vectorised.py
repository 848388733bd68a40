"""Running a per-point update rule over many series at once: slot state as numpy arrays, batches split into rounds.

A ``Kernel`` is one detector's update rule written for arrays: given the state of k distinct series and one point
for each, it returns the k scores and the k new states. A kernel may also keep *tables*: per-series values in a
fixed number of buckets chosen by the timestamp (an hour-of-day profile, say); a step sees and updates only the
bucket of each point, handed to it like any other field.

``SlotStore`` keeps the state of every slot in one ``(fields, capacity)`` array (the tables in one more).
``KernelBatch`` feeds a batch to it in rounds, round r holding every slot's r-th point of the batch, so a slot that
appears several times is updated in array order. ``KernelDetector`` is the one-series shape: a store of one slot,
so both shapes run the same floating-point operations and give the same scores bit for bit.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from detectors.base import BatchDetector, Detector, FloatArray, IntArray, State

# A kernel's view of k series: one array of k values per state field.
SlotArrays = dict[str, FloatArray]
# Sort keys value * n + index must stay below this to fit an int64.
_KEY_LIMIT = 2**62


def prefixed_names(prefix: str, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Each of a part kernel's field names paired with its name in a composite kernel's state (``prefix.name``);
    built once, since steps run once per round."""
    return tuple((name, f"{prefix}.{name}") for name in names)


def part_state(state: SlotArrays, names: tuple[tuple[str, str], ...]) -> SlotArrays:
    """A part kernel's view of a composite kernel's state."""
    return {name: state[prefixed] for name, prefixed in names}


def prefixed(values: Mapping[str, Any], names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A part kernel's values under their names in the composite kernel's state."""
    return {prefixed: values[name] for name, prefixed in names}


class StateFormatError(ValueError):
    """Raised when a snapshot to restore lacks a field, has an extra one, or holds a value that is not a number."""


class Kernel(abc.ABC):
    """A vectorised update rule: hyper-parameters live on the kernel, learned state in the arrays it is handed."""

    @property
    @abc.abstractmethod
    def fields(self) -> tuple[str, ...]:
        """Names of the per-series state values, in storage order."""

    @abc.abstractmethod
    def initial(self) -> Mapping[str, float]:
        """The state of a series that has seen nothing."""

    @abc.abstractmethod
    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        """Scores of one point per series (k distinct series) and their new states; ``state`` is not modified.

        ``state`` holds the fields and, for the table fields, the entry of each point's bucket; the new state
        holds the same names.
        """

    @property
    def table_fields(self) -> tuple[str, ...]:
        """Names of the per-series, per-bucket values; none unless a kernel keeps tables."""
        return ()

    @property
    def field_groups(self) -> Mapping[str, tuple[int, int]]:
        """Runs of fields (name: start and stop in ``fields``) that a step sees, and may return, as one
        (fields, series) array under the run's name, besides one array per field: a kernel with many like fields
        (histogram bins) then works on them at once. None unless a kernel declares some."""
        return {}

    @property
    def buckets(self) -> int:
        """Number of buckets of each table."""
        return 0

    def bucket_of(self, timestamps: FloatArray) -> IntArray:
        """The bucket of each timestamp, in 0 .. buckets-1."""
        return np.zeros(len(timestamps), dtype=np.int64)

    def table_initial(self) -> Mapping[str, float]:
        """The value of every bucket of a series that has seen nothing."""
        return {}


def occurrence_rank(slots: IntArray) -> IntArray:
    """For each point, how many earlier points of the batch belong to the same slot."""
    order, sorted_rank = _by_slot(slots)
    rank = np.empty(len(slots), dtype=np.int64)
    rank[order] = sorted_rank
    return rank


def rounds(slots: IntArray) -> list[IntArray]:
    """The batch's points split into rounds: round r holds every slot's r-th point, as indices in ascending slot
    order (state rows are then visited in memory order, about twice as fast as in arrival order)."""
    order, sorted_rank = _by_slot(slots)
    count = int(sorted_rank.max()) + 1 if len(slots) else 0
    if count <= 1:
        return [order] if count else []
    # One stable sort groups the points by round (each round keeps the ascending slot order of ``order``), instead
    # of one scan of the whole batch per round, which made a batch of many points per series quadratic.
    bounds = np.cumsum(np.bincount(sorted_rank, minlength=count))[:-1]
    return np.split(order[_stable_argsort(sorted_rank)], bounds)


def _stable_argsort(values: IntArray) -> IntArray:
    """The indices that sort the non-negative ``values`` stably (equal values keep their array order)."""
    n = len(values)
    if n and int(values.max()) < _KEY_LIMIT // n:
        # Sorting the unique keys value * n + index by value is stable by construction, and numpy sorts plain
        # integers with SIMD code several times faster than a stable argsort.
        order: IntArray = np.sort(values * n + np.arange(n)) % n
        return order
    return np.argsort(values, kind="stable")


def _by_slot(slots: IntArray) -> tuple[IntArray, IntArray]:
    """Point indices sorted by slot (stable: each slot's points in array order), and each one's occurrence rank."""
    order = _stable_argsort(slots)
    ordered = slots[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(ordered)])
    sorted_rank: IntArray = np.arange(len(slots)) - np.repeat(starts, sizes)
    return order, sorted_rank


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateFormatError(f"state field {name!r} must hold finite numbers, got {value!r}")
    return float(value)


def _checked_state(kernel: Kernel, state: State) -> tuple[list[float], list[list[float]]]:
    """The fields' values and the tables' rows of a snapshot, checked against the kernel."""
    expected = {*kernel.fields, *kernel.table_fields}
    if set(state) != expected:
        raise StateFormatError(f"expected state fields {sorted(expected)}, got {sorted(state)}")
    values = [_number(name, state[name]) for name in kernel.fields]
    tables: list[list[float]] = []
    for name in kernel.table_fields:
        row = state[name]
        if not isinstance(row, list) or len(row) != kernel.buckets:
            raise StateFormatError(f"state field {name!r} must be a list of {kernel.buckets} numbers")
        tables.append([_number(name, value) for value in row])
    return values, tables


class SlotStore:
    """The state of ``capacity`` series for one kernel, and the step that updates k distinct ones of them."""

    def __init__(self, kernel: Kernel, capacity: int) -> None:
        self.kernel = kernel
        # Kept once: a kernel may build them on each call, and a step runs once per round.
        self._names, self._table_names, self._buckets = kernel.fields, kernel.table_fields, kernel.buckets
        self._groups = {name: slice(start, stop) for name, (start, stop) in kernel.field_groups.items()}
        grouped = {index for run in self._groups.values() for index in range(len(self._names))[run]}
        self._single = tuple((index, name) for index, name in enumerate(self._names) if index not in grouped)
        self._fresh = np.array([kernel.initial()[name] for name in kernel.fields], dtype=np.float64)
        self._fresh_table = np.array([kernel.table_initial()[name] for name in kernel.table_fields], dtype=np.float64)
        # Filled by assignment, not np.repeat: both write every byte of a large new array (tens of MB for a hundred
        # thousand series), but an assignment lets go of the interpreter while it does, and np.repeat held it (and
        # the event loop that grows the store) for 0.2-0.9 s where the assignment took 0.06 s.
        self.fields: FloatArray = np.empty((len(kernel.fields), capacity), dtype=np.float64)
        self.fields[...] = self._fresh[:, None]
        # One row per slot and bucket, slot-major: tables are large, and a point's entries side by side cost one
        # cache miss, not one per table field.
        self.tables: FloatArray = np.empty((capacity * kernel.buckets, len(kernel.table_fields)), dtype=np.float64)
        self.tables[...] = self._fresh_table[None, :]

    @property
    def capacity(self) -> int:
        return int(self.fields.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.fields.nbytes + self.tables.nbytes)

    def _buckets_of(self, slot: int) -> slice:
        return slice(slot * self._buckets, (slot + 1) * self._buckets)

    def grow(self, capacity: int) -> None:
        self.adopt(SlotStore(self.kernel, capacity))

    def adopt(self, grown: SlotStore) -> None:
        """Move this store's slots into ``grown`` (fresh, and larger) and go on with its arrays."""
        grown.fields[:, : self.capacity] = self.fields
        grown.tables[: len(self.tables)] = self.tables
        self.fields, self.tables = grown.fields, grown.tables

    def reset(self, slot: int) -> None:
        self.fields[:, slot] = self._fresh
        self.tables[self._buckets_of(slot)] = self._fresh_table

    def snapshot(self, slot: int) -> State:
        # tolist() gives Python floats in one call (checkpoints take every live series' snapshot).
        state: State = dict(zip(self._names, self.fields[:, slot].tolist(), strict=True))
        state.update(zip(self._table_names, self.tables[self._buckets_of(slot)].T.tolist(), strict=True))
        return state

    def restore(self, slot: int, state: State) -> None:
        values, tables = _checked_state(self.kernel, state)
        self.fields[:, slot] = values
        if tables:
            self.tables[self._buckets_of(slot)] = np.array(tables).T

    def step(self, owners: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        """Score and learn one point for each of the distinct slots ``owners``."""
        kernel, names, table_names = self.kernel, self._names, self._table_names
        # Owners come in ascending order; where they are a run of consecutive slots (a round that holds every series
        # of a range, as most rounds of a large batch do), a slice reads and writes the state in place of fancy
        # indexing, which costs several times more once a kernel keeps dozens of fields.
        span = slice(int(owners[0]), int(owners[-1]) + 1) if len(owners) else slice(0, 0)
        consecutive = span.stop - span.start == len(owners)
        # Kernels return new arrays and never write to the state they are handed, so a view serves.
        block = self.fields[:, span] if consecutive else np.take(self.fields, owners, axis=1)
        state = dict(zip(names, block, strict=True))
        for group, run in self._groups.items():
            state[group] = block[run]
        cells = owners * self._buckets + kernel.bucket_of(timestamps) if table_names else None
        if cells is not None:
            state.update(zip(table_names, np.take(self.tables, cells, axis=0).T, strict=True))
        # A finite value far enough out can overflow a square or a sum: such results are handled below, so
        # numpy need not warn about them.
        with np.errstate(over="ignore", invalid="ignore"):
            scores, learned = kernel.step(state, timestamps, values)
        if self._groups:
            # A group returned whole is written whole; its fields need not be returned one by one.
            new_fields = np.empty_like(block)
            for index, name in self._single:
                new_fields[index] = learned[name]
            for group, run in self._groups.items():
                new_fields[run] = learned[group]
        else:
            new_fields = np.stack([learned[name] for name in names])
        new_cells = np.stack([learned[name] for name in table_names], axis=1) if cells is not None else None
        finite = np.isfinite(new_fields).all(axis=0)
        if new_cells is not None:
            finite &= np.isfinite(new_cells).all(axis=1)
        if not finite.all():
            # A state that overflowed would blind the series for good: those series keep the state they had,
            # and the point, beyond anything the arithmetic can hold, scores as far out as a point can.
            new_fields[:, ~finite] = block[:, ~finite]
            if new_cells is not None and cells is not None:
                new_cells[~finite] = self.tables[cells[~finite]]
            scores = np.where(finite, scores, 1.0)
        if consecutive:
            self.fields[:, span] = new_fields
        else:
            self.fields[:, owners] = new_fields
        if new_cells is not None and cells is not None:
            self.tables[cells] = new_cells
        return np.where(np.isfinite(scores), scores, 1.0)


class KernelBatch(BatchDetector):
    """Any kernel over many slots."""

    def __init__(self, kernel: Kernel, capacity: int = 0) -> None:
        self.kernel = kernel
        self._store = SlotStore(kernel, capacity)

    @property
    def capacity(self) -> int:
        return self._store.capacity

    @property
    def state_bytes(self) -> int:
        """Bytes of numpy state held for all slots."""
        return self._store.nbytes

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > self.capacity:
            self._store.grow(capacity)

    def prepare_capacity(self, capacity: int) -> Callable[[], None]:
        if capacity <= self.capacity:
            return lambda: None
        # Only fresh arrays are made here (the store in use is not read), so this may run beside ``update_batch``.
        grown = SlotStore(self.kernel, capacity)

        def install() -> None:
            # The store may have grown meanwhile (another batch's new series): only ever larger.
            if grown.capacity > self.capacity:
                self._store.adopt(grown)

        return install

    def reset_slot(self, slot: int) -> None:
        self._store.reset(slot)

    def snapshot_slot(self, slot: int) -> State:
        return self._store.snapshot(slot)

    def restore_slot(self, slot: int, state: State) -> None:
        self._store.restore(slot, state)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        slots = np.asarray(slots, dtype=np.int64)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if not len(slots) == len(timestamps) == len(values):
            raise ValueError("slots, timestamps and values must have the same length")
        scores = np.zeros(len(values))
        if len(values) == 0:
            return scores
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise IndexError(f"slots must lie in 0..{self.capacity - 1}")
        # A missing or non-finite point scores 0 and teaches nothing, so it is simply left out of the rounds.
        missing = ~np.isfinite(values)
        present = np.flatnonzero(~missing) if missing.any() else None
        if present is not None:
            slots, timestamps, values = slots[present], timestamps[present], values[present]
        for points in rounds(slots):
            round_scores = self._store.step(slots[points], timestamps[points], values[points])
            scores[present[points] if present is not None else points] = round_scores
        return scores


class KernelDetector(Detector):
    """Any kernel over one series, point by point (a store of one slot, so the arithmetic is the batch's)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._store = SlotStore(kernel, 1)
        self._slot = np.zeros(1, dtype=np.int64)

    def update(self, timestamp: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        return float(self._store.step(self._slot, np.array([timestamp]), np.array([value]))[0])

    def snapshot(self) -> State:
        return self._store.snapshot(0)

    def restore(self, state: State) -> None:
        self._store.restore(0, state)
