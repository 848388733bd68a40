"""The real metric registries the dashboards query: the engine's (every owner that registers into it) and the
reference model server's, optionally fed with events so that every labelled series exists."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from engine.adapters.kafka.source import KafkaSourceMetrics
from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.playbook_reloader import PlaybookReloader
from engine.adapters.telemetry import EngineMetrics
from engine.core.actions.catalogue import CATALOGUE
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import SystemClock
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    MetricSample,
    Severity,
)
from tests.engine.factories import LATENCY, anomaly, incident

with warnings.catch_warnings():
    # mlflow, which the model server imports, warns about its own type hints while it loads.
    warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning)
    from serving.model_server import _Metrics as ModelServerMetrics

from serving.gpu import register_gpu_metrics

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


class _AppliesNothing:
    """Stands in for the remediator: the reloader only hands it a new set, which these registries do not use."""

    def replace(self, playbooks: Sequence[Playbook], policy: Policy, rules: CorrelationRules = NO_RULES) -> None:
        return None


class EngineRegistry:
    """The engine's registry as the composition root builds it (telemetry, Kafka source, playbook reloader)."""

    def __init__(self, playbook_dir: Path) -> None:
        """``playbook_dir``: a scratch copy of the shipped playbooks, which ``feed`` breaks to count a rejection."""
        shutil.copytree(PLAYBOOKS, playbook_dir, dirs_exist_ok=True)
        self._playbook_dir = playbook_dir
        self.registry = CollectorRegistry()
        self.metrics = EngineMetrics(self.registry)
        self.kafka = KafkaSourceMetrics(self.registry)
        self.reloader = PlaybookReloader(
            playbook_dir,
            cast(Remediator, _AppliesNothing()),
            SystemClock(),
            self.registry,
            current=load_playbook_set(playbook_dir),
        )

    def feed(self) -> None:
        """One of each kind of event the engine counts, so that every label a dashboard groups by has a value."""
        now = time.time()
        batch = [MetricSample(LATENCY, now - 5, 0.2), MetricSample(LATENCY, now, 0.3)]
        self.metrics.on_samples(batch)
        self.metrics.on_detection(batch, 0.002)
        self.metrics.on_anomalies([anomaly(now, severity=s) for s in Severity])
        for kind in IncidentChangeKind:
            self.metrics.on_incident_change(IncidentChange(kind, incident(), now))
        self.metrics.on_incident_change(IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-2"), now))
        for number, (status, action) in enumerate(zip(ActionStatus, sorted(CATALOGUE) * 2, strict=False)):
            mode = ActionMode.LIVE if number % 2 else ActionMode.DRY_RUN
            request = ActionRequest("inc-1", "inc-1", "pb", number, action, {}, mode, now)
            self.metrics.on_action(ActionResult(request, status, "", now))
        self.metrics.ingest.auth_failures.labels("remote_write").inc()
        self.metrics.ingest.notifications.labels("accepted").inc()
        self.metrics.ingest.remote_write_samples.inc(2)
        self.metrics.ingest.remote_write_rejected.inc()
        self.kafka.records.inc(3)
        self.kafka.samples.inc(3)
        self.kafka.dead_letters.labels("malformed").inc()
        self.kafka.set_lag(TopicPartition("aiops.samples", 0), 12)
        self.metrics.refresh_incidents({IncidentState.OPEN: 1, IncidentState.ACKNOWLEDGED: 1})
        assert self.reloader.reload()
        (self._playbook_dir / "broken.yaml").write_text("name: [unclosed\n")
        assert not self.reloader.reload()


@dataclass(frozen=True)
class _Rates:
    gpu: int


@dataclass(frozen=True)
class _Memory:
    used: int
    total: int


class FakeNvml:
    """Two GPUs as NVML describes them, so that the GPU panels have a series per GPU without a GPU here."""

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's own names
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Rates:  # noqa: N802
        return _Rates(gpu=[35, 90][handle])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:  # noqa: N802
        return _Memory(used=[10, 70][handle] * 2**30, total=80 * 2**30)

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"NVIDIA H100 80GB HBM3"


class ModelServerRegistry:
    """The model server's registry as its app builds it, on a host with two (fake) GPUs."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ModelServerMetrics(self.registry)
        assert register_gpu_metrics(self.registry, FakeNvml())

    def feed(self) -> None:
        """Requests to a numeric model and to a prompt-based one, so drift, token and safety series exist."""
        for seconds in (0.004, 0.02, 0.03, 0.3):
            self.metrics.latency.observe(seconds)
        self.metrics.errors.labels("predict").inc()
        self.metrics.version.set(3)
        self.metrics.observe([[0.5, 12.0], [0.7, 30.0]], [0.1, 0.9])
        answer = {"text": "ok", "usage": {"input_tokens": 40, "output_tokens": 12}, "safety": ["toxicity"]}
        self.metrics.observe([], [answer])


def exported_series_names(registry: CollectorRegistry) -> set[str]:
    """Names of the series ``registry`` exposes, labelled or not, including those with no sample yet.

    A family with samples is taken at its word: a histogram with a negative bucket, for one, has no ``_sum``.
    """
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names: set[str] = set()
    for family in registry.collect():
        exposed = {sample.name for sample in family.samples if not sample.name.endswith("_created")}
        names |= exposed or {family.name + suffix for suffix in suffixes[family.type]}
    return names
