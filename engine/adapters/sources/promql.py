"""Polls Prometheus with configured PromQL queries (prometheus-api-client) and streams the answers as samples.

Each query is one signal: its result's label sets become the series ``<signal>{labels}``. On start a
``query_range`` over the backfill window warms the detectors at once instead of after hours of polling.

Missing data is explicit, never a silent zero. A series that answered before and is absent now is *missing*, and
its signal's policy decides: ``hold`` repeats the last value, ``ignore`` sends nothing, ``anomalous`` raises a
synthetic ``AiopsMissingData`` alert (through the alert feed, so it opens an incident at once) that resolves when
data returns. A Prometheus that cannot be reached is the ``unreachable`` state: nothing is sent, the state and
the failure count are visible, and signals with the ``anomalous`` policy raise ``AiopsPrometheusUnreachable``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from engine.core.alert_feed import AlertFeed
from engine.domain.clock import Clock
from engine.domain.events import Alert, AlertStatus, MetricSample, SeriesKey, Severity, freeze_labels

log = logging.getLogger(__name__)


class MissingDataPolicy(enum.StrEnum):
    HOLD = "hold"
    ANOMALOUS = "anomalous"
    IGNORE = "ignore"


class SourceState(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class PromQuery:
    signal: str
    query: str
    missing: MissingDataPolicy = MissingDataPolicy.IGNORE


class PrometheusUnreachableError(ConnectionError):
    """Prometheus did not answer a query (network error, timeout, 5xx)."""


class PromQLSource:
    def __init__(
        self,
        url: str,
        queries: Sequence[PromQuery],
        *,
        clock: Clock,
        interval_s: float = 15.0,
        backfill_s: float = 3600.0,
        step_s: float | None = None,
        timeout_s: float = 5.0,
        alerts: AlertFeed | None = None,
    ) -> None:
        if interval_s <= 0 or backfill_s < 0:
            raise ValueError("interval_s must be positive and backfill_s not negative")
        self._client = PrometheusConnect(url, retry=Retry(total=0), timeout=max(1, math.ceil(timeout_s)))
        self._url = url
        self._queries = tuple(queries)
        self._clock = clock
        self._interval = interval_s
        self._backfill = backfill_s
        self._step = step_s or interval_s
        self._alerts = alerts
        self.state = SourceState.STARTING
        self.failures = 0
        self._last: dict[SeriesKey, MetricSample] = {}
        # Series of each signal that answered before and not in the latest poll, with when they went missing.
        self.missing: dict[SeriesKey, float] = {}
        self._raised: dict[str, Alert] = {}

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        if self._backfill > 0:
            batch = await self._guarded(self._backfill_once)
            if batch:
                yield batch
        while True:
            batch = await self._guarded(self.poll_once)
            if batch:
                yield batch
            await self._clock.sleep(self._interval)

    async def _guarded(self, step: Any) -> list[MetricSample]:
        try:
            batch: list[MetricSample] = await step()
        except PrometheusUnreachableError as exc:
            self.failures += 1
            if self.state is not SourceState.UNREACHABLE:
                log.warning("Prometheus at %s is unreachable: %s", self._url, exc)
            self.state = SourceState.UNREACHABLE
            await self._raise_for(MissingDataPolicy.ANOMALOUS, "AiopsPrometheusUnreachable", {"url": self._url})
            return []
        self.state = SourceState.UP
        await self._resolve("AiopsPrometheusUnreachable", {"url": self._url})
        return batch

    async def _backfill_once(self) -> list[MetricSample]:
        end = self._clock.now()
        start = datetime.fromtimestamp(end - self._backfill, tz=UTC)
        samples: list[MetricSample] = []
        for query in self._queries:
            result = await self._call(
                self._client.custom_query_range,
                query.query,
                start_time=start,
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{self._step:g}s",
            )
            for item in result:
                key = _series(query.signal, item["metric"])
                points = [MetricSample(key, float(t), float(v)) for t, v in item["values"]]
                samples.extend(points)
                if points:
                    self._last[key] = points[-1]
        return sorted(samples, key=lambda s: s.timestamp)

    async def poll_once(self) -> list[MetricSample]:
        """One instant query per signal; the missing-data policy fills in for series that did not answer."""
        now = self._clock.now()
        samples: list[MetricSample] = []
        for query in self._queries:
            result = await self._call(self._client.custom_query, query.query, params={"time": f"{now:.3f}"})
            seen = set()
            for item in result:
                key = _series(query.signal, item["metric"])
                timestamp, value = item["value"]
                sample = MetricSample(key, float(timestamp), float(value))
                seen.add(key)
                previous = self._last.get(key)
                # The same evaluation twice (a poll faster than scraping) is not a new observation.
                if previous is None or sample.timestamp > previous.timestamp:
                    samples.append(sample)
                    self._last[key] = sample
                if self.missing.pop(key, None) is not None:
                    await self._resolve("AiopsMissingData", key.label_map | {"signal": query.signal})
            for key, last in self._last.items():
                if key.name != query.signal or key in seen:
                    continue
                self.missing.setdefault(key, now)
                if query.missing is MissingDataPolicy.HOLD:
                    samples.append(MetricSample(key, now, last.value))
                elif query.missing is MissingDataPolicy.ANOMALOUS:
                    await self._raise_for(query.missing, "AiopsMissingData", key.label_map | {"signal": query.signal})
        return samples

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = await asyncio.to_thread(method, *args, **kwargs)
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise PrometheusUnreachableError(str(exc)) from exc
        return result

    async def _raise_for(self, policy: MissingDataPolicy, name: str, labels: dict[str, str]) -> None:
        if self._alerts is None or policy is not MissingDataPolicy.ANOMALOUS:
            return
        if name == "AiopsPrometheusUnreachable" and not any(
            q.missing is MissingDataPolicy.ANOMALOUS for q in self._queries
        ):
            return
        fingerprint = _fingerprint(name, labels)
        if fingerprint in self._raised:
            return
        alert = Alert(
            name=name,
            fingerprint=fingerprint,
            status=AlertStatus.FIRING,
            labels=freeze_labels(labels | {"alertname": name}),
            starts_at=self._clock.now(),
            severity=Severity.WARNING,
        )
        self._raised[fingerprint] = alert
        await self._alerts.submit([alert])

    async def _resolve(self, name: str, labels: dict[str, str]) -> None:
        alert = self._raised.pop(_fingerprint(name, labels), None)
        if alert is not None and self._alerts is not None:
            now = self._clock.now()
            await self._alerts.submit([replace(alert, status=AlertStatus.RESOLVED, ends_at=now)])


def _fingerprint(name: str, labels: dict[str, str]) -> str:
    return "aiops-" + hashlib.sha256(f"{name}|{sorted(labels.items())}".encode()).hexdigest()[:16]


def _series(signal: str, metric: dict[str, str]) -> SeriesKey:
    return SeriesKey.of(signal, {k: v for k, v in metric.items() if k != "__name__"})
