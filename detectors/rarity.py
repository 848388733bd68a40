"""Rarity: how seldom a series has been this far from its baseline, learned from the series' own history.

A distance from a baseline (a z-score) means different things on different series: a spiky request counter reaches
z = 20 every day, a smooth temperature never reaches 5. ``RarityScale`` turns distances into how rare they are among
the series' own recent distances, so that the scores of every series share one scale and one threshold serves them
all, whatever their noise looks like.

Distances are counted as ``u = log(1 + z)`` in a histogram of ``BINS`` bins (``BIN_WIDTH`` wide) whose counts fade
exponentially (the last ``memory`` points or so weigh most). The tail probability of a new distance is

    p = (faded count of the bins at or above its own + prior * (e^edge / e^u) ** alpha) / (all counts + prior)

where ``edge`` is the top of the highest bin the series has reached (the last factor is 1 within that range).
Within the range seen this is the empirical tail with ``prior`` pseudo-counts, so the rarest distance seen is about
one in ``memory``. Past it, the tail is extrapolated as a power law in ``1 + z`` whose index ``alpha`` is the
series' own: a Hill estimate from its distances beyond ``tail_from`` (faded like the counts), drawn towards
``tail_index`` by ``tail_prior`` pseudo-points. A series with Gaussian noise (a steep tail) makes a distance twice its
largest very rare; one with heavy tails (bursts of traffic) needs a far larger one. The rarity is reported in
decades, ``r = -log10(p)``.

Each channel rates one kind of distance with its own histogram and tail (the counts' total is shared, since every
channel counts every point). What is learned is chosen so that anomalies do not teach the series that they are
normal: a distance rated at ``learn_below`` decades or more counts only ``alarm_weight`` of a point, and the
``delayed`` channels learn a distance ``delay`` points after rating it, so a leak that grows point by point is rated
against a history that does not hold it yet. Fading is lazy: a new point is counted with a weight that grows by
``1 / (1 - 1/memory)`` per point, and all counts are scaled down now and then, so a step adds to one bin per channel.
Running sums (not reductions) gather the tails, so one series alone and many together give the same results bit for
bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import BoolArray, FloatArray
from detectors.zscore import ParameterError, check_positive

# Bins of u = log(1 + z), each BIN_WIDTH wide: the last starts at z = e^6 - 1 (about 400) and holds the rest.
BINS = 16
BIN_WIDTH = 0.4
# A bin whose faded count (with those above it) is below this is taken as not reached: counts never reach 0.
REACHED = 1e-3
# The tail index is never taken below this: a tail heavier than 1 / z would have no mean.
MIN_TAIL_INDEX = 1.0
# Counts weigh at most this much before they are scaled down (the weight grows by 1/(1 - 1/memory) per point).
RESCALE_ABOVE = 1e100
# A distance beyond anything finite arithmetic can weigh is this rare, not infinitely rare.
SMALLEST_PROBABILITY = 1e-300
# Channels a scale may rate, and the first row of each one's bins in the flat (channels * BINS, series) state.
MAX_CHANNELS = 16
_CHANNEL_OFFSET = (np.arange(MAX_CHANNELS, dtype=np.float64) * BINS)[:, None]


def bin_of(u: FloatArray) -> FloatArray:
    """The histogram bin of each ``u``, as a float (it is added to row offsets before it indexes)."""
    result: FloatArray = np.minimum(np.floor(u / BIN_WIDTH), BINS - 1.0)
    return result


@dataclass(frozen=True)
class RarityState:
    """The rarity state of k series: one value per series (``weight``, ``total``, ``cursor``, ``queued``) or a
    block of rows (``bins``: channels x BINS; ``tail``: 2 per channel; ``queue``: ``delay`` per channel)."""

    weight: FloatArray
    total: FloatArray
    cursor: FloatArray
    queued: FloatArray
    bins: FloatArray
    tail: FloatArray
    queue: FloatArray


class RarityScale:
    """The rarity of distances on ``channels`` channels, one histogram and tail estimate per channel per series; a
    part of a kernel. Its state is ``weight`` and ``total`` (one value per series), ``bins`` (channels x BINS values)
    and ``excess`` (two per channel: the faded count and sum of the excesses beyond ``tail_from``)."""

    def __init__(
        self,
        channels: int,
        memory: float = 5000.0,
        prior: float = 1.0,
        tail_from: float = 2.0,
        tail_index: float = 2.0,
        tail_prior: float = 5.0,
        delay: int = 2,
        delayed: Sequence[int] = (0,),
        learn_below: float = math.inf,
        alarm_weight: float = 1.0,
    ) -> None:
        if memory < 2.0:
            raise ParameterError(f"memory must be at least 2 points, got {memory}")
        for name, value in (
            ("prior", prior),
            ("tail_from", tail_from),
            ("tail_index", tail_index),
            ("tail_prior", tail_prior),
        ):
            check_positive(name, value)
        self.fade = 1.0 - 1.0 / memory
        self.prior = prior
        self.tail_from = math.log1p(tail_from)
        self.tail_index = tail_index
        self.tail_prior = tail_prior
        if delay < 0:
            raise ParameterError(f"delay must not be negative, got {delay}")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ParameterError(f"a rarity scale rates 1 to {MAX_CHANNELS} channels, got {channels}")
        if not set(delayed) <= set(range(channels)):
            raise ParameterError(f"delayed channels {list(delayed)} are not among the {channels} channels")
        self.delay = delay
        self.learn_below = learn_below
        self.alarm_weight = alarm_weight
        self.delayed = np.array(sorted(set(delayed)), dtype=np.int64)
        self.channels = channels

    @property
    def bins_size(self) -> int:
        """Rows of the ``bins`` state."""
        return self.channels * BINS

    @property
    def queue_size(self) -> int:
        """Rows of the ``queue`` state: ``delay`` per delayed channel."""
        return len(self.delayed) * self.delay

    @property
    def tail_size(self) -> int:
        """Rows of the ``tail`` state: per channel, the faded count and sum of the excesses beyond ``tail_from``."""
        return self.channels * 2

    def _decades(
        self,
        counts: FloatArray,
        tail_state: FloatArray,
        weight: FloatArray,
        total: FloatArray,
        distances: FloatArray,
    ) -> FloatArray:
        """Each channel's rarity in decades for the series of ``counts`` (channels x bins x series)."""
        # Counts at or above each bin, summed from the top down: a running sum adds in the same order for one
        # series as for many (a reduction may not).
        above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
        tail = np.take_along_axis(above, bin_of(distances).astype(np.int64)[:, None, :], axis=1)[:, 0, :]
        # The top edge of the highest bin reached: the number of bins whose tail holds more than a trace.
        edge = (above > REACHED * weight).sum(axis=1) * BIN_WIDTH
        beyond = np.maximum(0.0, distances - edge)
        pseudo = self.tail_prior * weight
        # Hill's estimate of the power-law index of 1 + z beyond tail_from, with tail_prior pseudo-points.
        index = np.maximum(MIN_TAIL_INDEX, (tail_state[0::2] + pseudo) / (tail_state[1::2] + pseudo / self.tail_index))
        probability = (tail + self.prior * weight * np.exp(-index * beyond)) / (total + self.prior * weight)
        # Adding 0.0 turns the -0.0 of a certain distance into 0.0.
        result: FloatArray = -np.log10(np.maximum(probability, SMALLEST_PROBABILITY)) + 0.0
        return result

    def rate(self, state: RarityState, distances: FloatArray, counted: BoolArray) -> tuple[FloatArray, RarityState]:
        """Each channel's rarity in decades for ``distances`` (channels x series, as ``u``), and the new state;
        where ``counted`` is false, the distances are rated but not learned.

        Only series with a distance beyond ``tail_from`` on some channel are rated; the others score 0 on every
        channel (a point within that distance of every baseline is not unusual, and most points are such points,
        so the histograms are read for few series). A distance is learned ``delay`` points after it was rated: an
        anomaly that grows point by point (a leak) is then rated against a history that does not hold it yet.
        (Only the ``delayed`` channels wait: on the others, a distance learned late would be rated again, as new,
        by the points that follow it.)
        """
        k = distances.shape[1]
        counts = state.bins.reshape(self.channels, BINS, k)
        decades = np.zeros_like(distances)
        beyond_tail = distances > self.tail_from
        rated = np.flatnonzero(beyond_tail.any(axis=0))
        weight, total, tail_state = state.weight, state.total, state.tail
        if len(rated):
            decades[:, rated] = self._decades(
                counts[:, :, rated], tail_state[:, rated], weight[rated], total[rated], distances[:, rated]
            )
        columns = np.arange(k)
        # A distance rated as an alarm is not learned: the next anomaly like it must not look ordinary.
        spared = decades >= self.learn_below
        if self.delay and len(self.delayed):
            # The queue holds each delayed channel's last ``delay`` distances; the cursor points at the oldest,
            # which is learned now and replaced by the distance just rated. No channel learns until it is full.
            slots = (np.arange(len(self.delayed))[:, None] * self.delay + state.cursor).astype(np.int64)
            oldest = state.queue[slots, columns]
            queue = state.queue.copy()
            # A distance rated as an alarm goes in as -(1 + u), so that it is known as one when it comes out.
            entering = distances[self.delayed]
            queue[slots, columns] = np.where(counted, np.where(spared[self.delayed], -1.0 - entering, entering), oldest)
            learned_now = distances.copy()
            learned_now[self.delayed] = np.where(oldest < 0.0, -1.0 - oldest, oldest)
            spared = spared.copy()
            spared[self.delayed] = oldest < 0.0
            learning = counted & (state.queued >= self.delay)
            cursor = np.where(counted, (state.cursor + 1.0) % self.delay, state.cursor)
            queued = np.where(counted, np.minimum(state.queued + 1.0, self.delay), state.queued)
        else:
            learned_now, queue, cursor, queued, learning = distances, state.queue, state.cursor, state.queued, counted
        new_weight = np.where(learning, weight / self.fade, weight)
        step = np.where(learning, new_weight, 0.0)
        # The total counts every point (rarity is per point seen); the bins and the tail only those learned.
        channel_step = np.where(spared, self.alarm_weight * step, step)
        over = np.where(learned_now > self.tail_from, channel_step, 0.0)
        new_tail = np.empty_like(tail_state)
        new_tail[0::2] = tail_state[0::2] + over
        new_tail[1::2] = tail_state[1::2] + over * (learned_now - self.tail_from)
        # Each series adds to one bin per channel: rows channel * BINS + bin of the flat bins.
        rows = (bin_of(learned_now) + _CHANNEL_OFFSET[: self.channels]).astype(np.int64)
        new_bins = state.bins.copy()
        new_bins[rows, columns] = state.bins[rows, columns] + channel_step
        new_total = total + step
        if (new_weight > RESCALE_ABOVE).any():
            scale = np.where(new_weight > RESCALE_ABOVE, 1.0 / RESCALE_ABOVE, 1.0)
            new_weight, new_total, new_bins = new_weight * scale, new_total * scale, new_bins * scale
            new_tail *= scale
        return decades, RarityState(new_weight, new_total, cursor, queued, new_bins, new_tail, queue)
