"""The reference model server's own metrics: drift statistics, prompt-model counters and GPU figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from serving.gpu import register_gpu_metrics
from serving.model_server import MAX_SAFETY_CATEGORIES, _Metrics


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return registry.get_sample_value(name, labels or {})


def test_inputs_and_numeric_predictions_feed_the_drift_histograms() -> None:
    registry = CollectorRegistry()
    metrics = _Metrics(registry)
    metrics.observe([[0.3, 12.0], [0.6, 50.0]], [0.1, 0.9])
    assert _value(registry, "model_server_input_feature_value_count", {"feature": "0"}) == 2
    assert _value(registry, "model_server_input_feature_value_bucket", {"feature": "1", "le": "10.0"}) == 0
    assert _value(registry, "model_server_input_feature_value_bucket", {"feature": "1", "le": "100.0"}) == 2
    assert _value(registry, "model_server_prediction_value_count") == 2
    assert _value(registry, "model_server_prediction_value_bucket", {"le": "0.5"}) == 1


def test_only_the_first_sixteen_features_are_labelled() -> None:
    registry = CollectorRegistry()
    _Metrics(registry).observe([[1.0] * 40], [1.0])
    assert _value(registry, "model_server_input_feature_value_count", {"feature": "15"}) == 1
    assert _value(registry, "model_server_input_feature_value_count", {"feature": "16"}) is None


def test_prompt_model_answers_count_tokens_and_safety_flags_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = _Metrics(registry)
    answer = {"text": "...", "usage": {"input_tokens": 120, "output_tokens": 30}, "safety": ["pii", "toxicity"]}
    metrics.observe([[0.0]], [answer, answer])
    assert _value(registry, "model_server_tokens_total", {"direction": "input"}) == 240
    assert _value(registry, "model_server_tokens_total", {"direction": "output"}) == 60
    assert _value(registry, "model_server_safety_flags_total", {"category": "pii"}) == 2
    metrics.observe([[0.0]], [{"safety": [f"made-up-{i}" for i in range(MAX_SAFETY_CATEGORIES + 5)]}])
    assert _value(registry, "model_server_safety_flags_total", {"category": "other"}) == 7


@dataclass
class _Rates:
    gpu: int


@dataclass
class _Memory:
    used: int
    total: int


class FakeNvml:
    """Two GPUs as NVML describes them."""

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Rates:  # noqa: N802
        return _Rates(gpu=[35, 90][handle])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:  # noqa: N802
        return _Memory(used=[10, 70][handle] * 2**30, total=80 * 2**30)

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"NVIDIA H100 80GB HBM3"


def test_gpu_figures_are_read_at_scrape_time_through_nvml() -> None:
    registry = CollectorRegistry()
    assert register_gpu_metrics(registry, FakeNvml())
    labels = {"gpu": "1", "name": "NVIDIA H100 80GB HBM3"}
    assert _value(registry, "model_server_gpu_utilization_ratio", labels) == 0.9
    assert _value(registry, "model_server_gpu_memory_used_bytes", labels) == 70 * 2**30
    assert _value(registry, "model_server_gpu_memory_total_bytes", {"gpu": "0", "name": labels["name"]}) == 80 * 2**30


def test_without_a_gpu_there_are_no_gpu_metrics_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """This machine has no GPU driver: NVML is not found, which is the path every CPU-only host takes."""
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="serving.gpu"):
        assert not register_gpu_metrics(registry)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("no GPU metrics:")
    assert not [m for m in registry.collect() if m.name.startswith("model_server_gpu")]
