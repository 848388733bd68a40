"""GPU utilisation and memory of the model server's host, read through NVML when a GPU is there.

Without a GPU (no driver, no NVML library, no device) the server exports no GPU metrics at all, rather than zeros
that would read as an idle GPU, and says so in one log line at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class Nvml(Protocol):
    """The few NVML calls used (the ``pynvml`` module of nvidia-ml-py, or a stand-in in tests)."""

    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802 - NVML's own names

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...  # noqa: N802

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # noqa: N802

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # noqa: N802

    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...  # noqa: N802


class GpuCollector(Collector):
    """Reads every GPU at scrape time, so the figures are as fresh as the scrape."""

    def __init__(self, nvml: Nvml) -> None:
        self._nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["gpu", "name"]
        utilisation = GaugeMetricFamily(
            "model_server_gpu_utilization_ratio", "share of time the GPU was busy (NVML)", labels=labels
        )
        used = GaugeMetricFamily("model_server_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=labels)
        total = GaugeMetricFamily("model_server_gpu_memory_total_bytes", "GPU memory in all (NVML)", labels=labels)
        for index in range(self._nvml.nvmlDeviceGetCount()):
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            name = self._nvml.nvmlDeviceGetName(handle)
            values = [str(index), name.decode() if isinstance(name, bytes) else name]
            utilisation.add_metric(values, self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            used.add_metric(values, float(memory.used))
            total.add_metric(values, float(memory.total))
        yield from (utilisation, used, total)


def register_gpu_metrics(registry: CollectorRegistry, nvml: Nvml | None = None) -> bool:
    """Export GPU metrics into ``registry`` if NVML finds a GPU; False (and one log line) if not."""
    if nvml is None:
        nvml = _load_nvml()
        if nvml is None:
            return False
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as exc:  # NVML reports everything through its own exception classes
        log.info("no GPU metrics: NVML cannot count devices (%s)", exc)
        return False
    if count == 0:
        log.info("no GPU metrics: NVML sees no GPU")
        return False
    registry.register(GpuCollector(nvml))
    log.info("exporting GPU metrics of %d GPU(s) through NVML", count)
    return True


def _load_nvml() -> Nvml | None:
    try:
        import pynvml  # noqa: PLC0415 - optional: only hosts with a GPU need it

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, or pynvml's NVMLError_LibraryNotFound / _DriverNotLoaded / ...
        log.info("no GPU metrics: NVML is not available (%s: %s)", type(exc).__name__, exc)
        return None
    module: Nvml = pynvml
    return module
