"""The KPI corpus: a seeded generator of labelled anomaly corpora in the NAB layout, made of the engine's own signals.

    python -m benchmarks.kpi_corpus --out DIR [--seed N] [--files-per-kind K] [--shape long|short|dense] [--force]

This module owns the synthetic corpus on which detectors are scored when the data should not be NAB's: service
metrics of the kinds the engine watches, with anomalies injected at known rows. Score a detector on it with the NAB
runner, ``python -m benchmarks.nab --corpus DIR --detector NAME``.

Layout (``DIR`` must be empty or absent; ``--force`` first deletes the files an earlier run wrote there):

* ``data/<kind>/<kind>_<i>.csv``: ``timestamp,value``, timestamps ``%Y-%m-%d %H:%M:%S`` in UTC at a regular step.
* ``labels/combined_windows.json``: ``{"<kind>/<kind>_<i>.csv": [["<start>.000000", "<end>.000000"], ...]}``, each
  edge the timestamp of a row, as in NAB.
* ``config/profiles.json``: NAB's three cost profiles (standard, reward_low_FP_rate, reward_low_FN_rate).
* ``injections.json``: the manifest. ``files`` holds each file's step, rows, start and drawn parameters;
  ``injections`` holds one entry per injection: its file, type, onset row, end row (the last row it changes),
  magnitude with its unit, parameters (direction, the file's noise ``sigma`` at the onset, seasonal mode), and its
  window as rows and as timestamps.

Files. ``K`` files per kind (default 6), laid out by ``--shape`` (``SHAPES``): ``long`` (the default) as described
here; ``short`` half-hourly or hourly, 1,200 to 1,800 rows, 1 to 4 anomalies (weights 10/20/30/40 %), as a KPI store
keeps series; ``dense`` as ``short`` with 6, 8 or 10 anomalies a file. In ``long``, each file has its own step (1,
2, 3 or 5 minutes), length (3,000 to 10,000 rows), start (a random step of a day in 2022 to 2025) and its own base
level and noise drawn from ranges, so that no single scale fits every file. Traffic follows a daily cycle (a swing
of 20 to 60 %, peaking between noon and 9 pm, with a second harmonic) and a weekly one (weekends 5 to 45 % lower,
changing smoothly around midnight), both in the local time of a random time zone (UTC-10 to UTC+10); the kinds that
follow traffic share that shape.

Kinds (one category directory each):

* ``latency``: p99 latency in seconds. A base of 40 ms to 1.5 s that rises with load (an exponent of the traffic
  shape), a slow random wander, and heavy-tailed multiplicative noise (lognormal, with Student-t shocks of 6 to 20
  degrees of freedom).
* ``error_ratio``: errors / requests per interval, in [0, 1]. Requests are Poisson around the traffic shape; the
  error probability (0.03 % to 2 %, a little higher at peak) is overdispersed (lognormal jitter) and the errors are
  binomial, so quiet files are mostly exact zeros.
* ``throughput``: requests per interval, Poisson counts around 2 to 400 requests a second with the daily and weekly
  cycles, a slow wander and a few percent of overdispersion.
* ``gpu_utilization``: percent, whole numbers in [0, 100]: an idle floor plus a share that follows traffic, with
  Gaussian noise and a slow wander, clipped.
* ``gpu_memory``: GiB used on a 24, 40 or 80 GiB card: the model's weights plus a sawtooth (memory grows between
  restarts that come every 3 to 24 hours, give or take a quarter, and drop it back), a little of it following
  traffic, plus noise, clipped to the card.
* ``drift``: a PSI-like drift score: gamma-distributed (shape 5 to 15) around 0.012 to 0.05, with a slow
  multiplicative wander and a weak daily cycle.

Injections. A file gets 0 to 4 (1 to 4 with weights 35/30/20/15 %); every sixth file (file ``i`` of the ``k``-th
kind in ``KINDS`` when ``(k + i) % 6 == 0``) gets none, so that one file in six is anomaly-free whatever ``K`` is.
Types are drawn among those that suit the kind (``KindModel.types``). "sigma" is the file's noise at the onset in the
kind's own scale: the log of the value for latency and throughput (so their spikes and shifts multiply the value),
the value itself for the others; for GPU memory it also counts the sawtooth's spread (``growth / sqrt(12)``), which
dwarfs the noise. Magnitudes are drawn log-uniformly from subtle to obvious:

* ``spike``: 1 to 3 rows moved by 3 to 12 sigma (up; up or down for throughput and GPU utilisation).
* ``level_shift``: a step of 1.5 to 8 sigma (direction as suits the kind), to the end of the file or for 300 to
  1,500 rows.
* ``variance``: the noise's standard deviation multiplied by 1.8 to 5 for 100 to 800 rows.
* ``ramp``: a leak, growing linearly in the value to 2.5 to 10 sigma over 200 to 800 rows, then gone (a restart).
* ``seasonal``: for 0.6 to 1.5 days, the daily cycle shifts by 4 to 12 hours or vanishes; only in files of at
  least 3 days whose daily swing is at least twice their noise (latency, throughput, GPU utilisation).
* ``flatline``: the value stuck at the row before the onset for 20 to 300 rows (a frozen exporter).
* ``dropout``: the value 0 for 3 to 120 rows (throughput and GPU utilisation: the process is gone).

Effects that end (all but a level shift to the end of the file, which adds to what follows) end before the next
window begins, so one injection never hides the next. Only the onsets are labelled, not the returns to normal (as in
NAB), nor the GPU memory's scheduled restarts, which are normal behaviour.

Windows follow NAB's convention: a file's windows add up to 10 % of its rows, split equally between its anomalies
(``floor(0.1 * rows / count)`` rows each), each centred on its injection's onset. Onsets are placed so that every
window lies after NAB's probation (the first ``min(floor(0.15 * rows), 750)`` rows) and inside the file, and
onsets are at least two window widths apart, so windows never overlap.

Seed. Everything follows from ``--seed`` (default 1): file ``i`` of the ``k``-th kind draws from
``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k, i)))``, the same stream as
``SeedSequence(seed).spawn(...)[k].spawn(...)[i]``. A file therefore does not change when ``K`` changes, and the
same seed writes byte-identical files (with the same numpy).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from detectors.base import FloatArray
from detectors.nab.scoring import probation_length

KINDS = ("latency", "error_ratio", "throughput", "gpu_utilization", "gpu_memory", "drift")
FIRST_DAY = np.datetime64("2022-01-03T00:00:00", "s")
START_DAYS = 1_400
DAY_S = 86_400
WEEK_DAYS = 7
CLEAN_EVERY = 6
WINDOW_SHARE = 0.10
# Fewest rows (after the onset) each type needs to show; a type that does not fit before the next window is skipped.
MIN_ROOM = {"spike": 1, "level_shift": 100, "variance": 60, "ramp": 100, "seasonal": 1, "flatline": 20, "dropout": 3}
SEASONAL_MIN_SNR = 2.0
NAB_PROFILES = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}
DATA_DIR = "data"
LABELS_FILE = "labels/combined_windows.json"
PROFILES_FILE = "config/profiles.json"
MANIFEST_FILE = "injections.json"

Params = dict[str, float]


@dataclass(frozen=True)
class Shape:
    """How a corpus's files are laid out: steps, lengths, and how many injections a file gets."""

    steps_s: tuple[int, ...]
    rows: tuple[int, int]
    injection_counts: tuple[int, ...]
    count_weights: tuple[float, ...]
    # Onsets keep this many rows after them (besides half a window), so that every type of effect fits.
    min_tail: int
    # A seasonal break needs a file at least this many days long.
    seasonal_min_days: float


SHAPES = {
    # Minutes apart, a few days to a week long, one to four anomalies: the default.
    "long": Shape((60, 120, 180, 300), (3_000, 10_000), (1, 2, 3, 4), (0.35, 0.30, 0.20, 0.15), 100, 3.0),
    # Half-hourly and hourly, one to two months: series as a KPI store keeps them, with more anomalies each.
    "short": Shape((1_800, 3_600), (1_200, 1_800), (1, 2, 3, 4), (0.10, 0.20, 0.30, 0.40), 30, 10.0),
    # As "short", with six to ten anomalies a file: a detector that hides later anomalies behind earlier ones
    # (a long refractory period, say) shows it here.
    "dense": Shape((1_800, 3_600), (1_200, 1_800), (6, 8, 10), (1 / 3, 1 / 3, 1 / 3), 30, 10.0),
}


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float) -> FloatArray:
    """A stationary AR(1) path with standard deviation ``sd``: the slow wander of a metric."""
    shocks = rng.normal(0.0, sd * math.sqrt(1.0 - phi * phi), n).tolist()
    path = np.empty(n, dtype=np.float64)
    x = float(rng.normal(0.0, sd))
    for i, shock in enumerate(shocks):
        x = phi * x + shock
        path[i] = x
    return path


def _extra_sd(scale: FloatArray, sampling_var: FloatArray, extra_sd: float) -> FloatArray:
    """The extra (relative) dispersion that makes the total noise ``scale`` times its usual size, when part of the
    variance (``sampling_var``, Poisson or binomial) is fixed by the counts."""
    target = scale**2 * (sampling_var + extra_sd**2)
    return np.sqrt(np.maximum(target - sampling_var, 0.0))


@dataclass(frozen=True)
class Clock:
    """A file's rows in time and the shape of its traffic: a daily cycle in [-1, 1] and a weekly factor."""

    start: np.datetime64
    step_s: int
    n: int
    utc_offset_h: int  # the users' time zone: the cycles follow their local time
    peak_h: float  # local hour of the daily peak
    harmonic: float
    harmonic_peak_h: float
    amplitude: float
    weekend: float

    @property
    def epoch_s(self) -> FloatArray:
        first = float((self.start - np.datetime64(0, "s")).astype(np.int64))
        return first + self.step_s * np.arange(self.n, dtype=np.float64)

    @property
    def day_rows(self) -> int:
        return DAY_S // self.step_s

    @property
    def days(self) -> float:
        return self.n / self.day_rows

    @property
    def local_s(self) -> FloatArray:
        return self.epoch_s + 3600.0 * self.utc_offset_h

    def daily(self, shift_h: float = 0.0) -> FloatArray:
        """The daily cycle at each row (1 at the peak), read ``shift_h`` hours later than the row's time."""
        hours = (self.local_s % DAY_S) / 3600.0 + shift_h
        return self._shape(hours) / self._norm()

    def weekly(self) -> FloatArray:
        """1 on weekdays, ``weekend`` on local Saturday and Sunday, with transitions of a few hours."""
        day = (self.local_s / DAY_S + 3.0) % WEEK_DAYS  # 1970-01-01 was a Thursday: 0 is Monday
        tau = 0.1
        inside = sum(_sigmoid((day + k - 5.0) / tau) - _sigmoid((day + k - 7.0) / tau) for k in (-7.0, 0.0, 7.0))
        return 1.0 - (1.0 - self.weekend) * np.clip(inside, 0.0, 1.0)

    def load(self, daily: FloatArray) -> FloatArray:
        """Traffic relative to its mean weekday level: ``(1 + amplitude * daily) * weekly``."""
        return (1.0 + self.amplitude * daily) * self.weekly()

    def stamps(self) -> list[str]:
        times = self.start + np.arange(self.n) * np.timedelta64(self.step_s, "s")
        return [text.replace("T", " ") for text in np.datetime_as_string(times, unit="s").tolist()]

    def _shape(self, hours: FloatArray) -> FloatArray:
        first = np.cos(2.0 * np.pi * (hours - self.peak_h) / 24.0)
        second = np.cos(4.0 * np.pi * (hours - self.harmonic_peak_h) / 24.0)
        return np.asarray(first + self.harmonic * second, dtype=np.float64)

    def _norm(self) -> float:
        return float(np.max(np.abs(self._shape(np.linspace(0.0, 24.0, 1441)))))


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def draw_clock(rng: np.random.Generator, shape: Shape) -> Clock:
    step_s = int(rng.choice(shape.steps_s))
    day = int(rng.integers(START_DAYS))
    step_of_day = int(rng.integers(DAY_S // step_s))
    return Clock(
        start=FIRST_DAY + np.timedelta64(day * DAY_S + step_of_day * step_s, "s"),
        step_s=step_s,
        n=int(rng.integers(shape.rows[0], shape.rows[1] + 1)),
        utc_offset_h=int(rng.integers(-10, 11)),
        peak_h=float(rng.uniform(12.0, 21.0)),
        harmonic=float(rng.uniform(0.0, 0.45)),
        harmonic_peak_h=float(rng.uniform(0.0, 24.0)),
        amplitude=float(rng.uniform(0.2, 0.6)),
        weekend=float(rng.uniform(0.55, 0.95)),
    )


@dataclass(frozen=True)
class Frame:
    """What a kind's level is built from: the clock, the daily cycle (after seasonal breaks) and the traffic."""

    clock: Clock
    daily: FloatArray
    load: FloatArray


class KindModel(ABC):
    """One signal kind: its parameters, its level (in the kind's own scale) and how noise turns it into values.

    Spikes, level shifts and ramps are added to the level, in units of ``sigma``; ``realise`` draws the values from
    the level with the noise's standard deviation multiplied by ``scale`` (variance changes).
    """

    name: str
    types: tuple[str, ...]
    log_scale: bool = False  # the level is the log of the value (ramps are still linear in the value)
    spike_up: float  # probability that a spike goes up
    shift_up: float  # probability that a level shift goes up
    fmt: str  # printf format of a value in the CSV

    @abstractmethod
    def draw(self, rng: np.random.Generator, clock: Clock) -> Params: ...

    @abstractmethod
    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray: ...

    @abstractmethod
    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float: ...

    @abstractmethod
    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray: ...

    def cycle_snr(self, clock: Clock, p: Params) -> float:
        """The daily swing of the level over its noise (0: the kind has no daily cycle worth breaking)."""
        return 0.0


class Latency(KindModel):
    name = "latency"
    log_scale = True
    types = ("spike", "level_shift", "variance", "ramp", "seasonal", "flatline")
    spike_up, shift_up, fmt = 1.0, 0.85, "%.5g"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        noise = float(rng.uniform(0.04, 0.22))
        return {
            "base_s": _loguniform(rng, 0.04, 1.5),
            "load_exponent": float(rng.uniform(0.3, 1.0)),
            "noise": noise,
            "tail_df": float(rng.uniform(6.0, 20.0)),
            "wander": noise * float(rng.uniform(0.2, 0.6)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        wander = _ar1(rng, frame.clock.n, p["wander"], 0.98)
        return math.log(p["base_s"]) + p["load_exponent"] * np.log(frame.load) + wander

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        return math.hypot(p["noise"], p["wander"])

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        df = p["tail_df"]
        shocks = rng.standard_t(df, frame.clock.n) * math.sqrt((df - 2.0) / df)
        return np.exp(level + scale * p["noise"] * shocks)

    def cycle_snr(self, clock: Clock, p: Params) -> float:
        return p["load_exponent"] * clock.amplitude / math.hypot(p["noise"], p["wander"])


class ErrorRatio(KindModel):
    name = "error_ratio"
    types = ("spike", "level_shift", "variance", "ramp")
    spike_up, shift_up, fmt = 1.0, 1.0, "%.6g"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        ratio = _loguniform(rng, 3e-4, 2e-2)
        return {
            "ratio": ratio,
            "requests": _loguniform(rng, 1.5, 80.0) / ratio,  # per interval: 1.5 to 80 errors expected
            "load_exponent": float(rng.uniform(0.0, 0.5)),
            "overdispersion": float(rng.uniform(0.1, 0.4)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        return np.asarray(p["ratio"] * frame.load ** p["load_exponent"], dtype=np.float64)

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        expected_errors = level[row] * p["requests"] * frame.load[row]
        return float(level[row] * math.sqrt(1.0 / expected_errors + p["overdispersion"] ** 2))

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        expected_requests = p["requests"] * frame.load
        requests = rng.poisson(expected_requests)
        jitter = _extra_sd(scale, 1.0 / (level * expected_requests), p["overdispersion"])
        ratio = level * np.exp(jitter * rng.standard_normal(frame.clock.n) - jitter**2 / 2.0)
        errors = rng.binomial(requests, np.clip(ratio, 0.0, 1.0))
        return np.asarray(errors / np.maximum(requests, 1), dtype=np.float64)


class Throughput(KindModel):
    name = "throughput"
    log_scale = True
    types = ("spike", "level_shift", "variance", "seasonal", "flatline", "dropout")
    spike_up, shift_up, fmt = 0.5, 0.5, "%.0f"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        jitter = float(rng.uniform(0.02, 0.08))
        return {
            "per_interval": _loguniform(rng, 2.0, 400.0) * clock.step_s,
            "jitter": jitter,
            "wander": jitter * float(rng.uniform(0.2, 0.6)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        wander = _ar1(rng, frame.clock.n, p["wander"], 0.98)
        return math.log(p["per_interval"]) + np.log(frame.load) + wander

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        return math.sqrt(math.exp(-level[row]) + p["jitter"] ** 2 + p["wander"] ** 2)

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        jitter = _extra_sd(scale, np.exp(-level), p["jitter"])
        rate = np.exp(level + jitter * rng.standard_normal(frame.clock.n) - jitter**2 / 2.0)
        return rng.poisson(rate).astype(np.float64)

    def cycle_snr(self, clock: Clock, p: Params) -> float:
        noise = math.sqrt(1.0 / p["per_interval"] + p["jitter"] ** 2 + p["wander"] ** 2)
        return clock.amplitude / noise


class GpuUtilization(KindModel):
    name = "gpu_utilization"
    types = ("spike", "level_shift", "variance", "seasonal", "flatline", "dropout")
    spike_up, shift_up, fmt = 0.5, 0.5, "%.0f"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        noise = float(rng.uniform(1.5, 6.0))
        return {
            "idle": float(rng.uniform(0.0, 15.0)),
            "peak": float(rng.uniform(45.0, 95.0)),
            "noise": noise,
            "wander": noise * float(rng.uniform(0.2, 0.6)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        busy = (p["peak"] - p["idle"]) * frame.load / (1.0 + frame.clock.amplitude)
        return p["idle"] + busy + _ar1(rng, frame.clock.n, p["wander"], 0.98)

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        return math.hypot(p["noise"], p["wander"])

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        noisy = level + scale * p["noise"] * rng.standard_normal(frame.clock.n)
        return np.asarray(np.clip(np.rint(noisy), 0.0, 100.0), dtype=np.float64)

    def cycle_snr(self, clock: Clock, p: Params) -> float:
        swing = (p["peak"] - p["idle"]) * clock.amplitude / (1.0 + clock.amplitude)
        return swing / math.hypot(p["noise"], p["wander"])


class GpuMemory(KindModel):
    name = "gpu_memory"
    types = ("spike", "level_shift", "variance", "ramp", "flatline")
    spike_up, shift_up, fmt = 1.0, 0.7, "%.3f"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        capacity = float(rng.choice((24.0, 40.0, 80.0)))
        return {
            "capacity_gib": capacity,
            "weights_gib": capacity * float(rng.uniform(0.15, 0.45)),
            "growth_gib": capacity * float(rng.uniform(0.04, 0.2)),
            "restart_every_h": float(rng.uniform(3.0, 24.0)),
            "traffic_gib": capacity * float(rng.uniform(0.0, 0.04)),
            "noise": capacity * float(rng.uniform(0.001, 0.005)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        period_rows = p["restart_every_h"] * 3600.0 / frame.clock.step_s
        sawtooth = p["growth_gib"] * _sawtooth(rng, frame.clock.n, period_rows)
        return p["weights_gib"] + sawtooth + p["traffic_gib"] * (frame.load - 1.0)

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        # The sawtooth's own spread (uniform over a cycle's growth) dwarfs the noise: anomalies are sized on both.
        return math.hypot(p["noise"], p["growth_gib"] / math.sqrt(12.0))

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        noisy = level + scale * p["noise"] * rng.standard_normal(frame.clock.n)
        return np.asarray(np.clip(noisy, 0.0, p["capacity_gib"]), dtype=np.float64)


def _sawtooth(rng: np.random.Generator, n: int, period_rows: float) -> FloatArray:
    """0 at each restart, rising linearly to 1 before the next; cycles last ``period_rows`` give or take 25 %."""
    count = int(n / (0.75 * period_rows)) + 3
    lengths = np.maximum(1, np.rint(period_rows * rng.uniform(0.75, 1.25, count))).astype(np.int64)
    edges = np.concatenate(([0], np.cumsum(lengths))) - int(rng.integers(lengths[0]))
    rows = np.arange(n)
    cycle = np.searchsorted(edges, rows, side="right") - 1
    return np.asarray((rows - edges[cycle]) / lengths[cycle], dtype=np.float64)


class Drift(KindModel):
    name = "drift"
    types = ("spike", "level_shift", "variance", "ramp", "flatline")
    spike_up, shift_up, fmt = 1.0, 1.0, "%.5f"

    def draw(self, rng: np.random.Generator, clock: Clock) -> Params:
        return {
            "base": _loguniform(rng, 0.012, 0.05),
            "shape": float(rng.uniform(5.0, 15.0)),
            "wander": float(rng.uniform(0.05, 0.2)),
            "daily": float(rng.uniform(0.0, 0.3)),
        }

    def level(self, rng: np.random.Generator, frame: Frame, p: Params) -> FloatArray:
        wander = np.exp(_ar1(rng, frame.clock.n, p["wander"], 0.97))
        return p["base"] * (1.0 + p["daily"] * frame.daily) * wander

    def sigma(self, frame: Frame, level: FloatArray, p: Params, row: int) -> float:
        return float(level[row] * math.sqrt(1.0 / p["shape"] + p["wander"] ** 2))

    def realise(
        self, rng: np.random.Generator, frame: Frame, level: FloatArray, p: Params, scale: FloatArray
    ) -> FloatArray:
        shape = p["shape"] / scale**2
        return np.asarray(np.maximum(level, 0.0) * rng.gamma(shape, 1.0 / shape), dtype=np.float64)


MODELS: Mapping[str, KindModel] = {
    model.name: model for model in (Latency(), ErrorRatio(), Throughput(), GpuUtilization(), GpuMemory(), Drift())
}


@dataclass(frozen=True)
class Injection:
    """One injected anomaly: rows ``onset`` .. ``end`` (inclusive) are changed."""

    type: str
    onset: int
    end: int
    magnitude: float
    unit: str  # "sigma", "factor", "hours" or "rows"
    direction: int = 0  # +1 up, -1 down, 0 neither
    mode: str = ""  # seasonal: "phase" or "flat"


def window_width(n_rows: int, count: int) -> int:
    """NAB's window width: 10 % of the rows, split equally between the file's anomalies."""
    return math.floor(WINDOW_SHARE * n_rows / count)


def windows_for(n_rows: int, onsets: Sequence[int]) -> list[tuple[int, int]]:
    """Each onset's window as inclusive rows: ``window_width`` rows centred on the onset, clipped to the file."""
    if not onsets:
        return []
    width = window_width(n_rows, len(onsets))
    windows = []
    for onset in onsets:
        start = onset - width // 2
        windows.append((max(0, start), min(n_rows - 1, start + width - 1)))
    return windows


def _place_onsets(rng: np.random.Generator, count: int, low: int, high: int, gap: int) -> list[int]:
    """``count`` sorted rows in ``low`` .. ``high``, at least ``gap`` apart, uniformly spread."""
    span = high - low - (count - 1) * gap
    if span < 0:
        raise ValueError(f"{count} onsets {gap} rows apart do not fit rows {low} .. {high}")
    picks = np.sort(rng.integers(0, span + 1, count))
    return [low + int(pick) + k * gap for k, pick in enumerate(picks)]


def _spike(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    rows = min(int(rng.integers(1, 4)), limit - onset + 1)
    direction = 1 if rng.random() < model.spike_up else -1
    return Injection("spike", onset, onset + rows - 1, _loguniform(rng, 3.0, 12.0), "sigma", direction)


def _level_shift(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    k = _loguniform(rng, 1.5, 8.0)
    direction = 1 if rng.random() < model.shift_up else -1
    to_end = rng.random() < 0.5
    end = clock.n - 1 if to_end else min(onset + int(rng.integers(300, 1501)) - 1, limit)
    return Injection("level_shift", onset, end, k, "sigma", direction)


def _variance(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    factor = _loguniform(rng, 1.8, 5.0)
    return Injection("variance", onset, min(onset + int(rng.integers(100, 801)) - 1, limit), factor, "factor")


def _ramp(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    k = _loguniform(rng, 2.5, 10.0)
    return Injection("ramp", onset, min(onset + int(rng.integers(200, 801)) - 1, limit), k, "sigma", 1)


def _seasonal(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    flat = rng.random() < 0.4
    shift_h = 0.0 if flat else float(rng.uniform(4.0, 12.0))
    end = min(onset + int(clock.day_rows * rng.uniform(0.6, 1.5)) - 1, limit)
    return Injection("seasonal", onset, end, shift_h, "hours", mode="flat" if flat else "phase")


def _flatline(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    end = min(onset + int(rng.integers(20, 301)) - 1, limit)
    return Injection("flatline", onset, end, float(end - onset + 1), "rows")


def _dropout(rng: np.random.Generator, model: KindModel, clock: Clock, onset: int, limit: int) -> Injection:
    end = min(onset + int(rng.integers(3, 121)) - 1, limit)
    return Injection("dropout", onset, end, float(end - onset + 1), "rows")


InjectionDraw = Callable[[np.random.Generator, KindModel, Clock, int, int], Injection]
DRAWS: Mapping[str, InjectionDraw] = {
    "spike": _spike,
    "level_shift": _level_shift,
    "variance": _variance,
    "ramp": _ramp,
    "seasonal": _seasonal,
    "flatline": _flatline,
    "dropout": _dropout,
}


def _fits(name: str, room: int, model: KindModel, clock: Clock, p: Params, shape: Shape) -> bool:
    if name == "seasonal":
        seasonal_ok = clock.days >= shape.seasonal_min_days and model.cycle_snr(clock, p) >= SEASONAL_MIN_SNR
        return seasonal_ok and room >= 0.6 * clock.day_rows
    return room >= MIN_ROOM[name]


def plan_injections(
    rng: np.random.Generator, model: KindModel, clock: Clock, p: Params, count: int, shape: Shape
) -> list[Injection]:
    """``count`` injections of types that suit ``model``, placed after probation and two windows apart."""
    if count == 0:
        return []
    width = window_width(clock.n, count)
    low = probation_length(clock.n) + width // 2
    high = clock.n - 1 - max(width - width // 2, shape.min_tail)
    onsets = _place_onsets(rng, count, low, high, 2 * width)
    # An effect ends before the next window begins; the last may run to the end of the file.
    limits = [next_onset - width // 2 - 1 for next_onset in onsets[1:]] + [clock.n - 1]
    injections = []
    for onset, limit in zip(onsets, limits, strict=True):
        names = [name for name in model.types if _fits(name, limit - onset + 1, model, clock, p, shape)]
        name = names[int(rng.integers(len(names)))]
        injections.append(DRAWS[name](rng, model, clock, onset, limit))
    return injections


def _daily_with_breaks(clock: Clock, injections: Sequence[Injection]) -> FloatArray:
    daily = clock.daily()
    for inj in injections:
        if inj.type == "seasonal":
            span = slice(inj.onset, inj.end + 1)
            daily[span] = 0.0 if inj.mode == "flat" else clock.daily(inj.magnitude)[span]
    return daily


def _ramp_shape(rows: int, height: float, log_scale: bool) -> FloatArray:
    """Linear growth to ``height`` over ``rows``; on a log scale, linear in the value (to ``exp(height)`` times)."""
    progress = np.arange(1, rows + 1, dtype=np.float64) / rows
    if log_scale:
        return np.log1p(math.expm1(height) * progress)
    return height * progress


def _add_to_level(
    level: FloatArray, injections: Sequence[Injection], sigmas: Sequence[float], log_scale: bool
) -> FloatArray:
    level = level.copy()
    for inj, sigma in zip(injections, sigmas, strict=True):
        span = slice(inj.onset, inj.end + 1)
        height = inj.direction * inj.magnitude * sigma
        if inj.type in ("spike", "level_shift"):
            level[span] += height
        elif inj.type == "ramp":
            level[span] += _ramp_shape(inj.end - inj.onset + 1, height, log_scale)
    return level


def _noise_scale(n: int, injections: Sequence[Injection]) -> FloatArray:
    scale = np.ones(n, dtype=np.float64)
    for inj in injections:
        if inj.type == "variance":
            scale[inj.onset : inj.end + 1] *= inj.magnitude
    return scale


def _overwrite_values(values: FloatArray, injections: Sequence[Injection]) -> FloatArray:
    values = values.copy()
    for inj in injections:
        span = slice(inj.onset, inj.end + 1)
        if inj.type == "flatline":
            values[span] = values[inj.onset - 1]
        elif inj.type == "dropout":
            values[span] = 0.0
    return values


@dataclass(frozen=True)
class KpiFile:
    """One generated data file with its injections (and their noise sigmas) and windows."""

    kind: str
    index: int
    clock: Clock
    params: Params
    values: FloatArray
    injections: tuple[Injection, ...]
    sigmas: tuple[float, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.kind}_{self.index}.csv"

    @property
    def windows(self) -> list[tuple[int, int]]:
        return windows_for(self.clock.n, [inj.onset for inj in self.injections])

    def csv_text(self) -> str:
        fmt = MODELS[self.kind].fmt
        rows = (f"{stamp},{fmt % value}" for stamp, value in zip(self.clock.stamps(), self.values, strict=True))
        return "timestamp,value\n" + "\n".join(rows) + "\n"


def file_seed(seed: int, kind: str, index: int) -> np.random.SeedSequence:
    """The seed of file ``index`` of ``kind``: child ``(k, index)`` of ``SeedSequence(seed)``."""
    return np.random.SeedSequence(seed, spawn_key=(KINDS.index(kind), index))


def is_clean(kind: str, index: int) -> bool:
    """Whether the file gets no injection: one file in six, spread over the kinds and indices."""
    return (KINDS.index(kind) + index) % CLEAN_EVERY == 0


def make_file(seed: int, kind: str, index: int, shape: Shape = SHAPES["long"]) -> KpiFile:
    """Generate file ``index`` of ``kind`` (deterministic in ``seed``, ``kind``, ``index`` and ``shape`` only)."""
    rng = np.random.default_rng(file_seed(seed, kind, index))
    model = MODELS[kind]
    clock = draw_clock(rng, shape)
    params = model.draw(rng, clock)
    count = 0 if is_clean(kind, index) else int(rng.choice(shape.injection_counts, p=shape.count_weights))
    injections = plan_injections(rng, model, clock, params, count, shape)
    daily = _daily_with_breaks(clock, injections)
    frame = Frame(clock=clock, daily=daily, load=clock.load(daily))
    level = model.level(rng, frame, params)
    sigmas = tuple(model.sigma(frame, level, params, inj.onset) for inj in injections)
    level = _add_to_level(level, injections, sigmas, model.log_scale)
    values = model.realise(rng, frame, level, params, _noise_scale(clock.n, injections))
    values = _overwrite_values(values, injections)
    return KpiFile(kind, index, clock, params, values, tuple(injections), sigmas)


def make_files(seed: int, files_per_kind: int, shape: Shape = SHAPES["long"]) -> Iterator[KpiFile]:
    for kind in KINDS:
        for index in range(files_per_kind):
            yield make_file(seed, kind, index, shape)


def _edge(stamp: str) -> str:
    return f"{stamp}.000000"


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _injection_entry(file: KpiFile, inj: Injection, sigma: float, window: tuple[int, int]) -> dict[str, Any]:
    stamps = file.clock.stamps()
    params: dict[str, Any] = {"sigma": _round(sigma)} if inj.unit == "sigma" else {}
    if inj.direction:
        params["direction"] = "up" if inj.direction > 0 else "down"
    if inj.mode:
        params["mode"] = inj.mode
    return {
        "file": file.key,
        "type": inj.type,
        "onset": inj.onset,
        "end": inj.end,
        "onset_timestamp": stamps[inj.onset],
        "magnitude": _round(inj.magnitude),
        "unit": inj.unit,
        "params": params,
        "window": list(window),
        "window_timestamps": [stamps[window[0]], stamps[window[1]]],
    }


def _file_entry(file: KpiFile) -> dict[str, Any]:
    clock = file.clock
    return {
        "kind": file.kind,
        "rows": clock.n,
        "step_s": clock.step_s,
        "start": clock.stamps()[0],
        "probation": probation_length(clock.n),
        "injections": len(file.injections),
        "params": {name: _round(value) for name, value in file.params.items()},
        "traffic": {
            "utc_offset_h": clock.utc_offset_h,
            "local_peak_h": _round(clock.peak_h),
            "daily_amplitude": _round(clock.amplitude),
            "weekend": _round(clock.weekend),
        },
    }


@dataclass
class CorpusWriter:
    """Writes generated files under ``root`` and, once all are in, the labels, profiles and manifest."""

    root: Path
    seed: int
    files_per_kind: int
    shape: str = "long"

    def __post_init__(self) -> None:
        self.labels: dict[str, list[list[str]]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.injections: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, file: KpiFile) -> None:
        path = self.root / DATA_DIR / file.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.csv_text(), encoding="utf-8", newline="\n")
        stamps = file.clock.stamps()
        windows = file.windows
        self.labels[file.key] = [[_edge(stamps[start]), _edge(stamps[end])] for start, end in windows]
        self.files[file.key] = _file_entry(file)
        for inj, sigma, window in zip(file.injections, file.sigmas, windows, strict=True):
            self.injections.append(_injection_entry(file, inj, sigma, window))
        self.rows += file.clock.n

    def finish(self) -> None:
        profiles = {
            name: {"CostMatrix": {"tpWeight": tp, "fnWeight": fn, "fpWeight": fp, "tnWeight": 1.0}}
            for name, (tp, fn, fp) in NAB_PROFILES.items()
        }
        manifest = {
            "seed": self.seed,
            "files_per_kind": self.files_per_kind,
            "shape": self.shape,
            "files": self.files,
            "injections": self.injections,
        }
        self._dump(LABELS_FILE, self.labels)
        self._dump(PROFILES_FILE, profiles)
        self._dump(MANIFEST_FILE, manifest)

    @property
    def windows(self) -> int:
        return len(self.injections)

    def _dump(self, relative: str, payload: Any) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=4) + "\n", encoding="utf-8", newline="\n")


FileHook = Callable[[KpiFile], None]


def generate(
    root: Path, seed: int = 1, files_per_kind: int = 6, hook: FileHook | None = None, shape: str = "long"
) -> CorpusWriter:
    """Write a corpus of ``files_per_kind`` files of every kind under ``root``, laid out as ``SHAPES[shape]``;
    ``hook`` hears of each file."""
    writer = CorpusWriter(root, seed, files_per_kind, shape)
    for file in make_files(seed, files_per_kind, SHAPES[shape]):
        writer.add(file)
        if hook is not None:
            hook(file)
    writer.finish()
    return writer


def previous_outputs(root: Path) -> list[Path]:
    """The files an earlier run may have written under ``root`` (what ``--force`` deletes)."""
    found = [root / relative for relative in (LABELS_FILE, PROFILES_FILE, MANIFEST_FILE)]
    for kind in KINDS:
        found.extend(sorted((root / DATA_DIR / kind).glob(f"{kind}_*.csv")))
    return [path for path in found if path.is_file()]


def _files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kpi_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the corpus")
    parser.add_argument("--seed", type=int, default=1, help="seed of the whole corpus (default 1)")
    parser.add_argument("--files-per-kind", type=int, default=6, metavar="K", help="files per kind (default 6)")
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), default="long", help="how files are laid out (default long; see above)"
    )
    parser.add_argument("--force", action="store_true", help="delete an earlier run's files in DIR first")
    return parser


def _generate_with_progress(root: Path, seed: int, files_per_kind: int, shape: str) -> CorpusWriter:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("files", total=len(KINDS) * files_per_kind)
        return generate(root, seed, files_per_kind, lambda _file: progress.advance(task), shape)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.files_per_kind < 1:
        parser.error("--files-per-kind must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be 0 or more")
    out: Path = args.out
    replaced = previous_outputs(out) if args.force else []
    if out.exists() and (not out.is_dir() or _files_under(out) - set(replaced)):
        print(f"error: {out} is not an empty directory (--force deletes an earlier run's files)", file=sys.stderr)
        return 2
    for path in replaced:
        path.unlink()
    started = time.perf_counter()
    writer = _generate_with_progress(out, args.seed, args.files_per_kind, args.shape)
    print(
        f"KPI corpus ({args.shape}, seed {args.seed}): {len(writer.files)} files, {writer.rows:,} rows, "
        f"{writer.windows} windows in {out}, {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
