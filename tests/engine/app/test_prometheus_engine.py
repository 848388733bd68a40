"""The pieces of `aiops watch` that need no server: its settings and the merged source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from engine.adapters.sources.merged import MergedSource
from engine.adapters.sources.promql import MissingDataPolicy, PromQuery
from engine.app.prometheus_engine import open_prometheus_engine, promql_queries
from engine.app.settings import load_settings
from engine.domain.clock import FakeClock
from engine.domain.errors import ConfigurationError
from engine.domain.events import MetricSample, SeriesKey


def test_promql_queries_are_read_from_json() -> None:
    text = '[{"signal": "p99", "query": "histogram_quantile(0.99, rate(x[5m]))", "missing": "anomalous"}]'
    assert promql_queries(text) == [
        PromQuery("p99", "histogram_quantile(0.99, rate(x[5m]))", MissingDataPolicy.ANOMALOUS)
    ]
    assert promql_queries("") == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p99=up", "AIOPS_PROMQL_QUERIES"),
        ('[{"signal": "p 99", "query": "up"}]', "signal"),
        ('[{"signal": "p99", "query": "up", "missing": "zero"}]', "missing"),
        ('[{"signal": "p99"}]', "query"),
    ],
)
def test_bad_promql_queries_name_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        promql_queries(text)


async def test_watch_needs_something_to_watch(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="needs AIOPS_PROMETHEUS_URL"):
        await open_prometheus_engine(load_settings({}, database_url="sqlite+aiosqlite:///:memory:"), clock=FakeClock())
    queries = '[{"signal": "p99", "query": "up"}]'
    with pytest.raises(ConfigurationError, match="AIOPS_PROMQL_QUERIES needs AIOPS_PROMETHEUS_URL"):
        await open_prometheus_engine(
            load_settings({}, database_url="sqlite+aiosqlite:///:memory:", promql_queries=queries), clock=FakeClock()
        )


class Listed:
    def __init__(self, name: str, count: int, fail: bool = False) -> None:
        self._key, self._count, self._fail = SeriesKey.of(name, {}), count, fail

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        for i in range(self._count):
            yield [MetricSample(self._key, float(i), float(i))]
        if self._fail:
            raise RuntimeError("source broke")


async def test_the_merged_source_passes_every_batch_on_in_each_sources_order() -> None:
    merged = [batch async for batch in MergedSource(Listed("a", 50), Listed("b", 30), capacity=2).batches()]
    by_series: dict[str, list[float]] = {}
    for batch in merged:
        for sample in batch:
            by_series.setdefault(sample.series.name, []).append(sample.timestamp)
    assert by_series == {"a": [float(i) for i in range(50)], "b": [float(i) for i in range(30)]}


async def test_a_failing_source_fails_the_merged_stream() -> None:
    with pytest.raises(RuntimeError, match="source broke"):
        [batch async for batch in MergedSource(Listed("a", 3, fail=True), Listed("b", 3)).batches()]
