"""The engine fed by Prometheus (`aiops watch`): PromQL polling of the configured signals and/or every sample
Prometheus remote-writes, with Alertmanager's webhook feeding the same incidents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.sources.merged import MergedSource
from engine.adapters.sources.promql import MissingDataPolicy, PromQLSource, PromQuery
from engine.adapters.sources.pushed import PushedSource
from engine.app.bootstrap import EngineBase, open_shared_parts
from engine.app.settings import Settings
from engine.app.summary import RunSummary
from engine.core.alert_feed import AlertFeed
from engine.core.detection import SeriesAdmission
from engine.core.ports import PipelineObserver, SampleSource
from engine.domain.clock import Clock
from engine.domain.errors import ConfigurationError


class _Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str = Field(min_length=1, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    query: str = Field(min_length=1)
    missing: MissingDataPolicy = MissingDataPolicy.IGNORE


_SIGNALS = TypeAdapter(list[_Signal])


def promql_queries(text: str) -> list[PromQuery]:
    """AIOPS_PROMQL_QUERIES as queries; ConfigurationError naming what is wrong."""
    if not text.strip():
        return []
    try:
        signals = _SIGNALS.validate_python(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ConfigurationError(f"AIOPS_PROMQL_QUERIES: {exc}") from exc
    return [PromQuery(s.signal, s.query, s.missing) for s in signals]


@dataclass
class PrometheusEngine(EngineBase):
    """Everything one Prometheus-fed engine process needs, wired."""

    promql: PromQLSource | None
    remote_write: PushedSource | None
    alerts: AlertFeed
    ingest: IngestCredentials | None
    # Detection, which admits remote_write's new series within the engine's series bound.
    series: SeriesAdmission | None = None

    def _api_extras(self) -> dict[str, Any]:
        return {"ingest": self.ingest, "alerts": self.alerts, "remote_write": self.remote_write, "series": self.series}

    def status(self) -> dict[str, Any]:
        promql = None if self.promql is None else {"state": self.promql.state.value, "failures": self.promql.failures}
        return {
            "source": "prometheus",
            "promql": promql,
            "remote_write": self.remote_write is not None,
            **super().status(),
        }


async def open_prometheus_engine(
    settings: Settings,
    *,
    clock: Clock,
    summary: RunSummary | None = None,
    observers: Sequence[PipelineObserver] = (),
) -> PrometheusEngine:
    """Check the settings and playbooks, failing fast; open the store; wire the PromQL and remote_write sources."""
    queries = promql_queries(settings.promql_queries)
    if queries and not settings.prometheus_url:
        raise ConfigurationError("AIOPS_PROMQL_QUERIES needs AIOPS_PROMETHEUS_URL")
    ingest = IngestCredentials.parse(settings.ingest_bearer_sha256, settings.ingest_basic_auth)
    if not queries and not ingest:
        raise ConfigurationError(
            "aiops watch needs AIOPS_PROMETHEUS_URL with AIOPS_PROMQL_QUERIES, or remote_write credentials "
            "(AIOPS_INGEST_BEARER_SHA256 or AIOPS_INGEST_BASIC_AUTH), or both"
        )
    alerts = AlertFeed()
    sources: list[SampleSource] = []
    promql = None
    if queries:
        promql = PromQLSource(
            settings.prometheus_url,
            queries,
            clock=clock,
            interval_s=settings.promql_interval_s,
            backfill_s=settings.promql_backfill_s,
            alerts=alerts,
        )
        sources.append(promql)
    remote_write = PushedSource() if ingest else None
    if remote_write is not None:
        sources.append(remote_write)
    parts = await open_shared_parts(settings, clock=clock, summary=summary)
    pipeline = parts.pipeline(MergedSource(*sources), observers, alerts=alerts)
    return PrometheusEngine(
        **parts.engine_fields(settings, pipeline),
        promql=promql,
        remote_write=remote_write,
        alerts=alerts,
        ingest=ingest,
        series=parts.detection,
    )
