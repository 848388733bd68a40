"""The PromQL source against a stand-in Prometheus HTTP API: backfill, polling, missing data, unreachable."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from engine.adapters.sources.promql import MissingDataPolicy, PromQLSource, PromQuery, SourceState
from engine.core.alert_feed import AlertFeed
from engine.domain.clock import FakeClock
from engine.domain.events import AlertStatus, MetricSample, SeriesKey

A = {"__name__": "latency", "pod": "a"}
B = {"__name__": "latency", "pod": "b"}


class FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range with whatever series the test put in ``current``."""

    def __init__(self) -> None:
        self.current: list[tuple[dict[str, str], float]] = []
        self.history: list[tuple[dict[str, str], list[tuple[float, float]]]] = []
        self.queries: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = parse_qs(url.query)
                fake.queries.append(params)
                if url.path == "/api/v1/query_range":
                    result: list[dict[str, Any]] = [
                        {"metric": m, "values": [[t, str(v)] for t, v in points]} for m, points in fake.history
                    ]
                    kind = "matrix"
                else:
                    at = float(params["time"][0])
                    result = [{"metric": m, "value": [at, str(v)]} for m, v in fake.current]
                    kind = "vector"
                body = json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


def _source(url: str, policy: MissingDataPolicy, clock: FakeClock, feed: AlertFeed | None = None) -> PromQLSource:
    return PromQLSource(
        url, [PromQuery("latency", "latency", policy)], clock=clock, interval_s=10, backfill_s=60, alerts=feed
    )


async def test_backfill_comes_first_then_polls_with_one_series_per_label_set(prometheus: FakePrometheus) -> None:
    clock = FakeClock(start=1000.0)
    prometheus.history = [(A, [(940.0, 1.0), (970.0, 2.0)]), (B, [(955.0, 5.0)])]
    prometheus.current = [(A, 3.0), (B, 6.0)]
    stream = _source(prometheus.url, MissingDataPolicy.IGNORE, clock).batches()
    backfill = await anext(stream)
    key_a, key_b = SeriesKey.of("latency", {"pod": "a"}), SeriesKey.of("latency", {"pod": "b"})
    assert backfill == [
        MetricSample(key_a, 940.0, 1.0),
        MetricSample(key_b, 955.0, 5.0),
        MetricSample(key_a, 970.0, 2.0),
    ]
    assert float(prometheus.queries[0]["start"][0]) == 940.0
    polled = await anext(stream)
    assert sorted(polled, key=str) == [MetricSample(key_a, 1000.0, 3.0), MetricSample(key_b, 1000.0, 6.0)]


@pytest.mark.parametrize("policy", list(MissingDataPolicy))
async def test_missing_series_follow_their_policy_and_never_become_zero(
    prometheus: FakePrometheus, policy: MissingDataPolicy
) -> None:
    clock, feed = FakeClock(start=1000.0), AlertFeed()
    source = _source(prometheus.url, policy, clock, feed)
    prometheus.current = [(A, 3.0), (B, 6.0)]
    await source.poll_once()
    prometheus.current = [(A, 4.0)]
    clock.advance(10)
    polled = await source.poll_once()
    key_b = SeriesKey.of("latency", {"pod": "b"})
    assert source.missing == {key_b: 1010.0}
    assert all(sample.value != 0.0 for sample in polled)
    held = [sample for sample in polled if sample.series == key_b]
    raised = feed.take_waiting()
    if policy is MissingDataPolicy.HOLD:
        assert held == [MetricSample(key_b, 1010.0, 6.0)]
        assert raised == []
    elif policy is MissingDataPolicy.IGNORE:
        assert held == []
        assert raised == []
    else:
        assert held == []
        [[alert]] = raised
        assert alert.name == "AiopsMissingData"
        assert alert.status is AlertStatus.FIRING
        assert dict(alert.labels)["pod"] == "b"
        # Still missing: no second alert. Back: the alert resolves.
        clock.advance(10)
        await source.poll_once()
        assert feed.take_waiting() == []
        prometheus.current = [(A, 4.0), (B, 7.0)]
        clock.advance(10)
        await source.poll_once()
        [[back]] = feed.take_waiting()
        assert back.status is AlertStatus.RESOLVED
        assert back.fingerprint == alert.fingerprint
        assert source.missing == {}


async def _failed(source: PromQLSource, times: int) -> None:
    for _ in range(1000):
        if source.failures >= times:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the source did not fail {times} times")


async def test_an_unreachable_prometheus_is_a_state_not_an_empty_answer() -> None:
    clock, feed = FakeClock(start=1000.0), AlertFeed()
    source = PromQLSource(
        "http://127.0.0.1:9",
        [PromQuery("latency", "latency", MissingDataPolicy.ANOMALOUS)],
        clock=clock,
        interval_s=10,
        backfill_s=0,
        timeout_s=1,
        alerts=feed,
    )
    stream = source.batches()
    first = asyncio.create_task(anext(stream))
    for polls in range(1, 4):
        await _failed(source, polls)
        clock.advance(10)
    # Three failed polls and still no batch: nothing was made up for the missing answers.
    assert not first.done()
    first.cancel()
    assert source.state is SourceState.UNREACHABLE
    assert source.failures >= 2
    [[alert]] = feed.take_waiting()
    assert alert.name == "AiopsPrometheusUnreachable"
