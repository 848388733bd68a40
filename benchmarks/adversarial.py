"""Hostile input against real engine processes, at every entry point: nothing fed to the engine may take it down,
bloat it, stall it or make it lose work.

    python -m benchmarks.adversarial [--quick] [--only TEXT] [--replay-seconds 60] [--kafka-bootstrap HOST:PORT]
                                     [--json]

Two engines run on free loopback ports, each in a process of its own with API tokens and an ingest credential:
``aiops run`` replays the bundled scenario (paced to last about ``--replay-seconds``, so that the hostile input
arrives while it is being replayed) and takes the HTTP API and the Alertmanager webhook inputs; ``aiops watch``
(remote_write only: ``aiops run`` has no remote_write receiver) takes the remote_write inputs and the playbook
inputs, which are written into its playbook directory (a copy of ``playbooks/``) and loaded with
``POST /api/v1/playbooks/reload``; a template bomb is then set off by a webhook alert that its trigger matches.
With a broker (``--kafka-bootstrap``, default ``AIOPS_TEST_KAFKA_BOOTSTRAP``), an ``aiops serve`` consumes a
topic of its own and takes the Kafka inputs (oversized and malformed records); without one, Kafka is skipped with a
note. Bad settings each start an ``aiops run`` of their own, which must end with status 2 and one line on stderr.

While each input is sent, a thread asks the target's ``/healthz`` every 20 ms; the input's stall is the slowest
answer among the checks that overlapped it (an input past the stall target is sent once more and keeps the smaller
stall: another process on a shared machine can hold the CPU for a moment, a stall the input causes comes back).
The target's resident memory (``/proc/<pid>/status``) is read before each input and 200 ms after its answer.
Once all inputs are sent, the replay is let finish and its incidents are compared by id with those of a clean run
of the same scenario and playbooks (``aiops playbooks backtest --scenario ... --json``: same detectors, same
deterministic incident ids).

It prints one JSON object: ``inputs_tried``, ``crashes`` (an engine exited; a bad setting that did not end with
status 2 and one line counts too), ``server_errors`` (any 5xx but a documented 503: the webhook's once the replay
is over), ``hung_seconds`` (the worst stall), ``max_rss_growth_mb`` (the largest growth for one input),
``lost_incidents`` (with ``lost_incidents_checked``: how), ``findings`` (each input that broke a target: input,
status, stall, growth), ``inputs`` (every input's figures), ``template_bombs`` (what became of the steps whose
templates were set off: each must be refused, ``failed`` as not planned) and ``skipped``.
Targets: 0 crashes, 0 server errors, no stall over 100 ms, under 100 MB growth for any input, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import itertools
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from benchmarks.loopback_http import free_port
from engine.adapters.api.auth import hash_secret
from engine.adapters.prometheus.remote_write import encode_write_request
from engine.adapters.scenario_files import load_scenario
from engine.app.settings import BUNDLED_SCENARIO
from engine.domain.events import MetricSample, SeriesKey

REPO = Path(__file__).resolve().parents[1]
AIOPS = [sys.executable, "-c", "from engine.app.cli import main; main()"]
INGEST_TOKEN = "adversarial-ingest-token"
ADMIN_TOKEN = "adversarial-admin-token"
TOKENS = f"adversary:admin:{hash_secret(ADMIN_TOKEN)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INGEST = {"Authorization": f"Bearer {INGEST_TOKEN}"}
JSON = {"Content-Type": "application/json"}
REMOTE_WRITE = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
REMOTE_WRITE_V2 = REMOTE_WRITE | {
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}
OTLP_PROTOBUF = {"Content-Type": "application/x-protobuf"}
MIB = 1024 * 1024

STALL_TARGET_S = 0.1
RSS_TARGET_MB = 100.0
HEALTH_INTERVAL_S = 0.02
# Time after an answer for what it set off (an alert's incident, a step planned) to happen before memory is read.
SETTLE_S = 0.2
START_TIMEOUT_S = 90.0


# -- the engines under attack -----------------------------------------------------------------------------------


@dataclass
class Engine:
    """One engine process and its base URL."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    # For an engine fed by Kafka: the producer and the topic it consumes.
    producer: AIOKafkaProducer | None = None
    topic: str = ""

    def rss_mb(self) -> float:
        """Resident memory in MiB (0 once the process is gone)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _env(work: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    return env | {
        "AIOPS_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'engine.db'}",
        "AIOPS_API_TOKENS": TOKENS,
        "AIOPS_INGEST_BEARER_SHA256": hash_secret(INGEST_TOKEN),
        "AIOPS_HTTP_HOST": "127.0.0.1",
        **settings,
    }


@contextmanager
def engine_process(name: str, work: Path, arguments: Sequence[str], **settings: str) -> Iterator[Engine]:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = work / "engine.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*AIOPS, *arguments],
            cwd=REPO,
            env=_env(work, AIOPS_HTTP_PORT=str(port), **settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        engine = Engine(name, process, f"http://127.0.0.1:{port}", log_path)
        try:
            _wait_until_up(engine)
            yield engine
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_up(engine: Engine) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not engine.alive:
            raise RuntimeError(f"{engine.name} exited at start: {engine.log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{engine.base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{engine.name} did not answer /healthz within {START_TIMEOUT_S:.0f} s")


class HealthProbe:
    """Asks ``/healthz`` every 20 ms from a thread of its own; keeps each check's start and end."""

    # The probe's thread shares this process with the one sending the input (building, encoding and writing up to
    # 50 MB): at Python's default 5 ms switch interval, each of a check's socket calls could wait that long for the
    # sender, and the check measured this process instead of the engine.
    SWITCH_INTERVAL_S = 0.0005

    def __init__(self, base: str) -> None:
        self._base = base
        self._checks: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)
        self._switch_interval = sys.getswitchinterval()

    def __enter__(self) -> HealthProbe:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.SWITCH_INTERVAL_S)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch_interval)

    def _run(self) -> None:
        with httpx.Client(base_url=self._base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                # A failed check (the engine gone or refusing) counts as stalled until it ends.
                with contextlib.suppress(httpx.HTTPError):
                    client.get("/healthz")
                self._checks.append((started, time.monotonic()))
                self._stop.wait(HEALTH_INTERVAL_S)

    def worst_between(self, start: float, end: float) -> float:
        """The slowest check that overlapped [start, end], in seconds."""
        overlapping = [b - a for a, b in list(self._checks) if b >= start and a <= end]
        return max(overlapping, default=0.0)


# -- the inputs ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request of an input (its body built before the input's measurement starts)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    # Time for what the request set off (an alert's incident and its planned steps) before the next one.
    then_wait_s: float = 0.0


Build = Callable[[Path], list[Call]]


@dataclass(frozen=True)
class Hostile:
    """One hostile input: the engine it goes to (``run`` or ``watch``), the requests it makes (built from the
    engine's playbook directory, where playbook inputs write their file), the requests that undo it afterwards
    (not measured) and whether a 503 is documented for it (the webhook's once the replay is over)."""

    name: str
    target: str
    build: Build
    undo: Build | None = None
    quick: bool = False
    documented_503: bool = False


def _calls(*calls: Call) -> Build:
    return lambda _: list(calls)


def _alert(labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": labels,
        "annotations": annotations or {"summary": "adversarial"},
        "startsAt": "2026-11-26T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        # Alertmanager's own identity of an alert: one per label set, so that each alert opens its own incident.
        "fingerprint": hashlib.sha256(json.dumps(sorted(labels.items())).encode("utf-8", "replace")).hexdigest()[:16],
    }


_SENT = itertools.count()


def _storm(count: int) -> bytes:
    """``count`` alerts never seen before (each opens an incident, also when the input is sent again)."""
    round_ = str(next(_SENT))
    return _dumps(
        _notification(*(_alert({"alertname": "Storm", "pod": f"p{i}", "round": round_}) for i in range(count)))
    )


def _notification(*alerts: dict[str, Any], group: str = "adversarial") -> dict[str, Any]:
    return {
        "version": "4",
        # Numbered, so that an input sent again is not taken for Alertmanager's redelivery of the same body.
        "groupKey": f'{{}}:{{alertname="{group}", sent="{next(_SENT)}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": group},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def _webhook(name: str, body: Callable[[], bytes], *, quick: bool = False) -> Hostile:
    return Hostile(
        name,
        "run",
        lambda _: [Call("POST", "/api/v1/alerts", INGEST | JSON, body())],
        quick=quick,
        documented_503=True,
    )


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _labels(count: int) -> dict[str, str]:
    return {"alertname": "Adversarial"} | {f"l{i}": "v" for i in range(count)}


WEBHOOK = [
    _webhook(
        "webhook: 50 MB annotation",
        lambda: _dumps(_notification(_alert(_labels(1), {"summary": "x" * (50 * MIB)}))),
        quick=True,
    ),
    _webhook(
        "webhook: 9 MB annotation (under the body limit, stored clipped)",
        lambda: _dumps(_notification(_alert(_labels(2), {"summary": "y" * (9 * MIB)}))),
        quick=True,
    ),
    _webhook("webhook: 10,000 labels", lambda: _dumps(_notification(_alert(_labels(10_000)))), quick=True),
    _webhook("webhook: NUL in a label value", lambda: _dumps(_notification(_alert({"alertname": "a\u0000b"})))),
    _webhook("webhook: bad label name", lambda: _dumps(_notification(_alert({"alertname": "A", "1-bad name": "v"})))),
    _webhook("webhook: 100 KB label value", lambda: _dumps(_notification(_alert({"alertname": "z" * 100_000})))),
    _webhook("webhook: nested 100,000 deep", lambda: b'{"alerts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    _webhook("webhook: not UTF-8", lambda: b'{"version": "4", "alerts": ["\xff\xfe\xfd"]}', quick=True),
    _webhook("webhook: lone surrogate", lambda: _dumps(_notification(_alert({"alertname": "\ud800"})))),
    _webhook("webhook: NaN", lambda: b'{"version": "4", "truncatedAlerts": NaN, "alerts": []}'),
    _webhook(
        "webhook: 5,000 alerts in one group",
        lambda: _storm(5000),
    ),
]


def _api(name: str, method: str, path: str, body: Callable[[], bytes] = bytes, *, quick: bool = False) -> Hostile:
    return Hostile(name, "run", lambda _: [Call(method, path, ADMIN | JSON, body())], quick=quick)


API = [
    _api(
        "api: 60 MB decision comment",
        "POST",
        "/api/v1/incidents/inc-0000000000000000/comment",
        lambda: _dumps({"comment": "c" * (60 * MIB)}),
        quick=True,
    ),
    _api("api: nested 100,000 deep", "POST", "/api/v1/approvals/act-x/approve", lambda: b"[" * 100_000),
    _api("api: not UTF-8", "POST", "/api/v1/silences", lambda: b'{"series": "\xff\xfe"}', quick=True),
    _api("api: NaN", "POST", "/api/v1/incidents/inc-0000000000000000/snooze", lambda: b'{"until": NaN}'),
    _api("api: lone surrogate", "POST", "/api/v1/silences", lambda: b'{"series": "\\ud800", "duration": "1h"}'),
    _api("api: 1 MB query string", "GET", "/api/v1/incidents?state=" + "o" * MIB),
    _api("api: 50,000 query parameters", "GET", "/api/v1/incidents?" + "&".join(["limit=1"] * 50_000)),
    _api("api: huge limit", "GET", "/api/v1/incidents?limit=" + "9" * 5000, quick=True),
    _api("api: bad cursor", "GET", "/api/v1/incidents?cursor=%00%ff" + "A" * 190),
    _api("api: 10,000-character incident id", "GET", "/api/v1/incidents/" + "i" * 10_000),
    _api("api: NUL in an incident id", "GET", "/api/v1/incidents/inc-%00"),
    _api("api: path traversal id", "POST", "/api/v1/approvals/..%2F..%2Fetc/approve"),
    _api("api: silence of 10,000 matchers", "POST", "/api/v1/silences", lambda: _dumps({"matchers": ["a=b"] * 10_000})),
    Hostile(
        "page: 20 MB login form",
        "run",
        _calls(
            Call(
                "POST",
                "/ui/login",
                {"Content-Type": "application/x-www-form-urlencoded"},
                b"token=" + b"t" * (20 * MIB),
            )
        ),
    ),
]


def _remote_write(name: str, body: Callable[[], bytes], *, quick: bool = False) -> Hostile:
    return Hostile(name, "watch", lambda _: [Call("POST", "/api/v1/write", INGEST | REMOTE_WRITE, body())], quick=quick)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _samples(count: int, *, value: float = 1.0, name: str = "adversarial_series") -> list[MetricSample]:
    now = time.time()
    return [MetricSample(SeriesKey.of(name, {"i": str(i)}), now, value) for i in range(count)]


def _snappy(raw: bytes) -> bytes:
    import cramjam  # noqa: PLC0415  (the engine's own snappy library)

    return bytes(cramjam.snappy.compress_raw(raw))


REMOTE_WRITE_INPUTS = [
    _remote_write("remote_write: body claiming 200 MB", lambda: _varint(200 * MIB) + b"\x00" * 64, quick=True),
    _remote_write("remote_write: 30 MB of zeros, snappy-compressed", lambda: _snappy(bytes(30 * MIB))),
    _remote_write("remote_write: 200,000 series", lambda: encode_write_request(_samples(200_000))),
    _remote_write(
        "remote_write: 50,000 new series", lambda: encode_write_request(_samples(50_000, name="adversarial_new"))
    ),
    _remote_write("remote_write: garbage", lambda: os.urandom(64 * 1024), quick=True),
    _remote_write(
        "remote_write: NaN and infinite values",
        lambda: encode_write_request(
            _samples(3, value=float("nan")) + _samples(3, value=float("inf"), name="adversarial_inf")
        ),
    ),
    _remote_write("remote_write: 9 MB body", lambda: os.urandom(9 * MIB)),
]


def _remote_write_v2(name: str, body: Callable[[], bytes], *, quick: bool = False) -> Hostile:
    headers = INGEST | REMOTE_WRITE_V2
    return Hostile(name, "watch", lambda _: [Call("POST", "/api/v1/write", headers, body())], quick=quick)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (written by hand: the large inputs below would take seconds as objects)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _v2_symbols(count: int, refs: Sequence[int]) -> bytes:
    """A 2.0 Request: a symbols table of ``count`` strings (the first the required empty one, then empty ones past
    a metric name) and one series of one sample with label references ``refs``."""
    symbols = _field(4, b"") + _field(4, b"__name__") + _field(4, b"adversarial_v2") + _field(4, b"") * (count - 3)
    sample = b"\x09" + struct.pack("<d", 1.0) + b"\x10" + _varint(int(time.time() * 1000))
    series = _field(5, _field(1, b"".join(_varint(ref) for ref in refs)) + _field(2, sample))
    return _snappy(symbols + series)


REMOTE_WRITE_V2_INPUTS = [
    # Two bytes an empty symbol: 2,000,000 of the 2 MiB a 2.0 body may expand to.
    _remote_write_v2("remote_write 2.0: 1,000,000 empty symbols", lambda: _v2_symbols(1_000_000, [1, 2])),
    _remote_write_v2(
        "remote_write 2.0: label refs past the table", lambda: _v2_symbols(3, [1, 2, 7, 2**32 - 1]), quick=True
    ),
]


def _otlp(name: str, body: Callable[[], bytes], *, json_body: bool = False, quick: bool = False) -> Hostile:
    headers = INGEST | (JSON if json_body else OTLP_PROTOBUF)
    return Hostile(name, "watch", lambda _: [Call("POST", "/v1/metrics", headers, body())], quick=quick)


def _otlp_gzip(name: str, body: Callable[[], bytes], *, quick: bool = False) -> Hostile:
    headers = INGEST | OTLP_PROTOBUF | {"Content-Encoding": "gzip"}
    return Hostile(name, "watch", lambda _: [Call("POST", "/v1/metrics", headers, gzip.compress(body()))], quick=quick)


def _otlp_request(*metrics: bytes) -> bytes:
    """An ExportMetricsServiceRequest of one resource and scope holding ``metrics`` (each a serialized Metric)."""
    return _field(1, _field(2, b"".join(_field(2, metric) for metric in metrics)))


def _gauge(name: str, points: bytes) -> bytes:
    """A Metric named ``name``: a gauge of ``points`` (serialized data_points fields)."""
    return _field(1, name.encode()) + _field(5, points)


def _point(value: float, attributes: bytes = b"") -> bytes:
    """A NumberDataPoint field (``attributes``: serialized KeyValue fields), in upb's own layout."""
    at = time.time_ns()
    fixed = (
        b"\x11" + struct.pack("<Q", at - 10**9) + b"\x19" + struct.pack("<Q", at) + b"\x21" + struct.pack("<d", value)
    )
    return _field(1, fixed + attributes)


def _attribute(key: bytes, value: bytes) -> bytes:
    """A KeyValue field of NumberDataPoint (number 7) with a string value."""
    return _field(7, _field(1, key) + _field(2, _field(1, value)))


# A KeyValue field of NumberDataPoint with neither key nor value.
_EMPTY_ATTRIBUTE = _field(7, b"")


def _otlp_new_series(count: int) -> bytes:
    round_ = str(next(_SENT)).encode()
    points = b"".join(_point(1.0, _attribute(b"i", b"%d" % i) + _attribute(b"round", round_)) for i in range(count))
    return _otlp_request(_gauge("adversarial_otlp_new", points))


def _otlp_histogram(buckets: int) -> bytes:
    """One cumulative histogram series of two points, each of ``buckets`` explicit bounds."""
    now = time.time_ns()
    bounds = struct.pack(f"<{buckets}d", *range(buckets))
    points = b""
    for step, at in enumerate((now - 10**9, now)):
        counts = struct.pack(f"<{buckets + 1}Q", *([step + 1] * (buckets + 1)))
        fixed = b"\x11" + struct.pack("<Q", now - 60 * 10**9) + b"\x19" + struct.pack("<Q", at)
        total = b"\x21" + struct.pack("<Q", (step + 1) * (buckets + 1)) + b"\x29" + struct.pack("<d", 1.0)
        points += _field(1, fixed + total + _field(6, counts) + _field(7, bounds))
    aggregation = b"\x10\x02"
    return _otlp_request(_field(1, b"adversarial_otlp_histogram") + _field(9, points + aggregation))


def _otlp_json_non_finite() -> bytes:
    now = str(time.time_ns())
    points = [{"timeUnixNano": now, "asDouble": value} for value in ("NaN", "Infinity", "-Infinity")]
    metric = {"name": "adversarial_otlp_json_nan", "gauge": {"dataPoints": points}}
    return _dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]})


OTLP_INPUTS = [
    # 40 MiB of a metric name, inflated from about 40 KB: past the 32 MiB a body may expand to.
    _otlp_gzip("otlp: gzip bomb (40 MiB inflated)", lambda: _otlp_request(_gauge("a" * (40 * MIB), b"")), quick=True),
    _otlp(
        "otlp: JSON nested 5,000 deep",
        lambda: b'{"resourceMetrics": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json_body=True,
    ),
    # 11 MB, gzip-compressed under the 8 MiB body bound.
    _otlp_gzip("otlp: 200,000 new series", lambda: _otlp_new_series(200_000)),
    # 29 bytes a point: 29 MB inflated, under the 32 MiB bound; a million points, ten times the sample bound.
    _otlp_gzip(
        "otlp: 1,000,000 points of empty attributes (29 MB inflated)",
        lambda: _otlp_request(_gauge("adversarial_otlp_points", _point(1.0) * 1_000_000)),
    ),
    # Within both bounds (95,000 points, 31 MB inflated), each point 150 two-byte empty attributes: parsed whole.
    _otlp_gzip(
        "otlp: 95,000 points of 150 empty attributes (31 MB inflated)",
        lambda: _otlp_request(_gauge("adversarial_otlp_empty", _point(1.0, _EMPTY_ATTRIBUTE * 150) * 95_000)),
    ),
    _otlp(
        "otlp: NaN and infinite values",
        lambda: _otlp_request(
            _gauge("adversarial_otlp_nan", b"".join(_point(v) for v in (math.nan, math.inf, -math.inf)))
        ),
    ),
    _otlp("otlp: NaN and infinite values (JSON)", _otlp_json_non_finite, json_body=True),
    _otlp(
        "otlp: attribute keys empty, NUL, 10 KB",
        lambda: _otlp_request(
            _gauge(
                "adversarial_otlp_keys",
                b"".join(_point(1.0, _attribute(key, b"v")) for key in (b"", b"a\x00b", b"k" * 10_240)),
            )
        ),
        quick=True,
    ),
    _otlp("otlp: histogram of 100,000 buckets", lambda: _otlp_histogram(100_000)),
    _otlp("otlp: truncated protobuf", lambda: _otlp_request(_gauge("adversarial_otlp_cut", _point(1.0) * 10))[:-7]),
]


RELOAD = Call("POST", "/api/v1/playbooks/reload", ADMIN)


def _playbook(name: str, text: Callable[[], str], *, alert: str | None = None, quick: bool = False) -> Hostile:
    """A hostile playbook file written into the engine's playbook directory and loaded; with ``alert``, an alert
    its trigger matches is then sent, so that its templates are rendered by the running pipeline."""
    file = "zz-adversarial.yaml"

    def build(directory: Path) -> list[Call]:
        (directory / file).write_text(text(), encoding="utf-8")
        calls = [RELOAD]
        if alert is not None:
            notification = _notification(_alert({"alertname": alert, "namespace": "adversarial"}), group=alert)
            calls.append(Call("POST", "/api/v1/alerts", INGEST | JSON, _dumps(notification), then_wait_s=0.5))
        return calls

    def undo(directory: Path) -> list[Call]:
        (directory / file).unlink(missing_ok=True)
        return [RELOAD]

    return Hostile(name, "watch", build, undo, quick=quick)


def _templated(alert: str, message: str) -> str:
    return (
        f"name: adversarial-{alert.lower()}\n"
        "triggers:\n"
        f"  - series: ALERTS\n    labels: {{alertname: {alert}}}\n"
        "steps:\n"
        "  - action: webhook_notify\n"
        "    params:\n"
        "      url: https://hooks.example.com/adversarial\n"
        "      format: slack\n"
        f"      message: {json.dumps(message)}\n"
    )


def _alias_bomb() -> str:
    lines = ["name: bomb", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


PLAYBOOKS = [
    _playbook("playbook: alias bomb", _alias_bomb, quick=True),
    _playbook("playbook: 52 MB file", lambda: "# " + "p" * (52 * MIB) + "\nname: big\n"),
    _playbook(
        "playbook: {{ range(10**10)|list }}",
        lambda: _templated("RangeBomb", "{{ range(10**10)|list }}"),
        alert="RangeBomb",
        quick=True,
    ),
    _playbook(
        "playbook: {{ 'x' * 100000000 }}",
        lambda: _templated("StringBomb", "{{ 'x' * 100000000 }}"),
        alert="StringBomb",
    ),
    _playbook("playbook: unclosed template", lambda: _templated("Unclosed", "{{ incident.id ")),
    _playbook("playbook: unknown filter", lambda: _templated("Filter", "{{ incident.id | nosuchfilter }}")),
    _playbook(
        "playbook: attribute walk to os",
        lambda: _templated("Walk", "{{ incident.__class__.__init__.__globals__['os'].system('true') }}"),
        alert="Walk",
    ),
]

# Bad settings: each must end `aiops run` with status 2 and one line on stderr.
SETTINGS: list[tuple[str, dict[str, str], bool]] = [
    ("AIOPS_HTTP_PORT=not-a-port", {"AIOPS_HTTP_PORT": "not-a-port"}, True),
    ("AIOPS_MODE=yolo", {"AIOPS_MODE": "yolo"}, False),
    ("AIOPS_API_TOKENS=garbage", {"AIOPS_API_TOKENS": "garbage"}, False),
    ("AIOPS_INGEST_BEARER_SHA256=not-hex", {"AIOPS_INGEST_BEARER_SHA256": "not-hex"}, True),
    ("AIOPS_REPLAY_SPEED=nan", {"AIOPS_REPLAY_SPEED": "nan"}, False),
    ("AIOPS_DATABASE_URL=nosuch://", {"AIOPS_DATABASE_URL": "nosuch://x"}, False),
    ("AIOPS_MAX_SERIES=-1", {"AIOPS_MAX_SERIES": "-1"}, False),
    ("AIOPS_PLAYBOOK_DIR=/nonexistent", {"AIOPS_PLAYBOOK_DIR": "/nonexistent/playbooks"}, False),
]


# Kafka records, produced to the topic an `aiops serve` consumes (key in ``path``, value in ``body``).
def _record(name: str, value: Callable[[], bytes], key: bytes = b"adversarial", *, quick: bool = False) -> Hostile:
    return Hostile(name, "serve", lambda _: [Call("PRODUCE", key.decode(), {}, value(), then_wait_s=0.5)], quick=quick)


def _kafka_samples(count: int) -> bytes:
    # Compact, so that one past the engine's 100,000 samples a message still fits the broker's 1 MB record.
    document = {"name": "adversarial_kafka", "labels": {}, "samples": [[1, 1]] * count}
    return json.dumps(document, separators=(",", ":")).encode()


KAFKA = [
    _record("kafka: 1,000,000-byte record", lambda: b"{" + b" " * 999_998 + b"}", quick=True),
    _record("kafka: not JSON", lambda: os.urandom(4096), quick=True),
    _record("kafka: nested 100,000 deep", lambda: b"[" * 100_000 + b"]" * 100_000),
    _record("kafka: 100,001 samples", lambda: _kafka_samples(100_001)),
    _record("kafka: NaN and infinite values", lambda: b'{"name": "k", "samples": [[1, NaN], [2, Infinity]]}'),
    _record(
        "kafka: NUL in a label", lambda: _dumps({"name": "k", "labels": {"a": "\u0000"}, "timestamp": 1, "value": 1})
    ),
    _record(
        "kafka: 10,000 labels", lambda: _dumps({"name": "k", "labels": _labels(10_000), "timestamp": 1, "value": 1})
    ),
    _record("kafka: empty record", lambda: b""),
]


# -- running them -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one input did to its engine."""

    name: str
    target: str
    statuses: list[int]
    stall_s: float
    rss_growth_mb: float
    crashed: bool = False
    server_errors: int = 0
    errors: list[str] = field(default_factory=list)
    stall_tries_ms: list[float] = field(default_factory=list)

    def breaks(self) -> list[str]:
        """The targets this input broke."""
        broken = ["crash"] if self.crashed else []
        broken += ["server error"] if self.server_errors else []
        broken += ["stall"] if self.stall_s > STALL_TARGET_S else []
        return broken + (["memory"] if self.rss_growth_mb >= RSS_TARGET_MB else [])

    def report(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "engine": self.target,
            "statuses": self.statuses,
            "stall_ms": round(self.stall_s * 1000, 1),
            "stall_tries_ms": self.stall_tries_ms,
            "rss_growth_mb": round(self.rss_growth_mb, 1),
            "crashed": self.crashed,
            "errors": self.errors,
        }


def _encoded(engine: Engine, call: Call) -> tuple[bytes, bytes]:
    """``call`` as the head and body of one HTTP/1.1 request, written as is (no client refuses a 1 MB URL here)."""
    host = engine.base.removeprefix("http://")
    head = [f"{call.method} {call.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in call.headers.items()]
    head.append(f"Content-Length: {len(call.body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode(), call.body


async def _call(engine: Engine, call: Call, request: tuple[bytes, bytes], errors: list[str]) -> int:
    """Send ``request`` (``call`` encoded) on a connection of its own; its status, or 0 when the engine closed the
    connection before answering."""
    if call.method == "PRODUCE":
        return await _produce(engine, call, errors)
    host, port = engine.base.removeprefix("http://").split(":")
    head, body = request
    status = 0
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head)
            await writer.drain()
            answer = asyncio.ensure_future(reader.readline())
            if len(body) > MIB:
                # A body refused for its declared length is answered before it is sent: that answer is read
                # rather than lost to the connection's reset.
                await asyncio.wait({answer}, timeout=0.1)
            if not answer.done():
                # In slices, each sent before the next: one huge write would be copied whole into the
                # transport's buffer, holding this process (and its health probe) for a while.
                with contextlib.suppress(OSError):  # refused before it was all sent: its answer may be there
                    view = memoryview(body)
                    for start in range(0, len(view), 256 * 1024):
                        writer.write(view[start : start + 256 * 1024])
                        await writer.drain()
            line = await asyncio.wait_for(answer, timeout=120)
            status = int(line.split()[1]) if line.startswith(b"HTTP/") else 0
            # The rest of the answer is not needed, but is read so that the engine is not left writing.
            while await asyncio.wait_for(reader.read(65536), timeout=120):
                pass
        finally:
            writer.close()
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        errors.append(f"{call.method} {call.path[:60]}: {type(exc).__name__}")
    if call.then_wait_s:
        await asyncio.sleep(call.then_wait_s)
    return status


async def _produce(engine: Engine, call: Call, errors: list[str]) -> int:
    """Produce ``call`` as a record (0 when the broker refused it, 202 once taken); then let the engine read it."""
    assert engine.producer is not None
    status = 202
    try:
        await engine.producer.send_and_wait(engine.topic, call.body, key=call.path.encode())
    except KafkaError as exc:
        errors.append(f"produce: {type(exc).__name__}")
        status = 0
    await asyncio.sleep(call.then_wait_s)
    return status


async def attack(engine: Engine, probe: HealthProbe, hostile: Hostile, playbook_dir: Path) -> Outcome:
    """Send one input; one that stalled the engine past the target is sent once more, and its stall is the smaller
    of the two (on a shared machine another process can hold the CPU for a moment; a stall the input causes comes
    back), both kept in ``stall_tries_ms``."""
    first = await _attack_once(engine, probe, hostile, playbook_dir)
    if first.stall_s <= STALL_TARGET_S or first.crashed:
        return first
    second = await _attack_once(engine, probe, hostile, playbook_dir)
    kept = second if second.stall_s < first.stall_s else first
    kept.stall_tries_ms = [round(first.stall_s * 1000, 1), round(second.stall_s * 1000, 1)]
    kept.server_errors = max(first.server_errors, second.server_errors)
    kept.rss_growth_mb = max(first.rss_growth_mb, second.rss_growth_mb)
    kept.crashed = second.crashed
    return kept


async def _attack_once(engine: Engine, probe: HealthProbe, hostile: Hostile, playbook_dir: Path) -> Outcome:
    """Send one input while ``probe`` watches the engine's health; undo it afterwards (not measured)."""
    calls = hostile.build(playbook_dir)
    requests = [_encoded(engine, call) for call in calls]
    errors: list[str] = []
    before = engine.rss_mb()
    started = time.monotonic()
    statuses = [await _call(engine, call, request, errors) for call, request in zip(calls, requests, strict=True)]
    answered = time.monotonic()
    await asyncio.sleep(SETTLE_S)
    outcome = Outcome(
        hostile.name,
        hostile.target,
        statuses,
        probe.worst_between(started, answered + SETTLE_S),
        engine.rss_mb() - before,
        crashed=not engine.alive,
        errors=errors,
    )
    outcome.server_errors = sum(s >= 500 and not (s == 503 and hostile.documented_503) for s in statuses)
    if hostile.undo is not None and engine.alive:
        for call in hostile.undo(playbook_dir):
            await _call(engine, call, _encoded(engine, call), errors)
    return outcome


def bad_setting(work: Path, name: str, settings: dict[str, str]) -> dict[str, Any]:
    """Start ``aiops run`` with one bad setting: it must end with status 2 and one line on stderr."""
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work, AIOPS_HTTP_PORT=str(free_port())) | settings
    try:
        done = subprocess.run(
            [*AIOPS, "run", "--exit-when-done", "--speed", "1000000"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"input": f"setting: {name}", "exit": None, "stderr_lines": None, "ok": False}
    lines = done.stderr.strip().splitlines()
    return {
        "input": f"setting: {name}",
        "exit": done.returncode,
        "stderr_lines": len(lines),
        "first_line": lines[0][:300] if lines else "",
        "ok": done.returncode == 2 and len(lines) == 1,
    }


def clean_incidents(scenario: Path, playbooks: Path) -> set[str]:
    """The incident ids of a clean run of ``scenario`` (dry-run backtest: same detectors, same ids)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    done = subprocess.run(
        [*AIOPS, "playbooks", "backtest", "--scenario", str(scenario), "--playbooks", str(playbooks), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return {incident["id"] for incident in json.loads(done.stdout)["incidents_opened"]}


async def _replay_done(client: httpx.AsyncClient, engine: Engine, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and engine.alive:
        status = (await client.get(f"{engine.base}/api/v1/status", headers=ADMIN)).json()
        if status["samples"] >= status["total_samples"]:
            return True
        await asyncio.sleep(0.5)
    return False


async def _incident_ids(client: httpx.AsyncClient, engine: Engine, max_pages: int = 100) -> set[str]:
    """Every incident's id, page by page (the alert inputs open thousands besides the replay's)."""
    ids: set[str] = set()
    params: dict[str, str | int] = {"limit": 1000}
    for _ in range(max_pages):
        answer = await client.get(f"{engine.base}/api/v1/incidents", params=params, headers=ADMIN)
        answer.raise_for_status()
        ids |= {incident["id"] for incident in answer.json()}
        cursor = answer.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        params = {"limit": 1000, "cursor": cursor}
    return ids


async def _template_bombs(client: httpx.AsyncClient, engine: Engine) -> list[dict[str, str]]:
    """What became of the steps of the hostile playbooks that alerts set off (each must be refused: not planned)."""
    answer = await client.get(f"{engine.base}/api/v1/actions", params={"limit": 1000}, headers=ADMIN)
    answer.raise_for_status()
    return [
        {"playbook": action["playbook"], "status": action["status"], "detail": action["detail"][:300]}
        for action in answer.json()
        if action["playbook"].startswith("adversarial-")
    ]


async def _after_replay(client: httpx.AsyncClient, engine: Engine) -> dict[str, Any]:
    """The webhook and /readyz once the replay is over: both must say the ingest path is closed, or neither."""
    notification = _dumps(_notification(_alert({"alertname": "AfterReplay"}), group="after-replay"))
    webhook = await client.post(f"{engine.base}/api/v1/alerts", content=notification, headers=INGEST | JSON)
    ready = await client.get(f"{engine.base}/readyz")
    return {"webhook": webhook.status_code, "readyz": ready.status_code, "readyz_body": ready.json()}


@dataclass(frozen=True)
class Plan:
    quick: bool
    replay_seconds: float
    # A broker for the Kafka inputs (an `aiops serve` consumes a topic of its own there); None: not attacked.
    kafka_bootstrap: str | None = None
    # Only the inputs (and bad settings) whose name holds this text; empty: all.
    only: str = ""

    def inputs(self) -> list[Hostile]:
        every = [
            *API,
            *WEBHOOK,
            *REMOTE_WRITE_INPUTS,
            *REMOTE_WRITE_V2_INPUTS,
            *OTLP_INPUTS,
            *PLAYBOOKS,
            *(KAFKA if self.kafka_bootstrap else []),
        ]
        return [hostile for hostile in every if (hostile.quick or not self.quick) and self.only in hostile.name]

    def settings(self) -> list[tuple[str, dict[str, str]]]:
        return [(name, values) for name, values, quick in SETTINGS if (quick or not self.quick) and self.only in name]


@contextlib.asynccontextmanager
async def kafka_engine(bootstrap: str, work: Path) -> AsyncIterator[Engine]:
    """`aiops serve` consuming a new topic of ``bootstrap``, with a producer to it."""
    topic = f"aiops-adversarial-{os.getpid()}-{int(time.time())}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    settings = {
        "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
        "AIOPS_KAFKA_TOPICS": topic,
        "AIOPS_KAFKA_GROUP_ID": f"group-{topic}",
        "AIOPS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq",
        "AIOPS_KAFKA_ANOMALY_TOPIC": f"{topic}.anomalies",
        "AIOPS_KAFKA_INCIDENT_TOPIC": f"{topic}.incidents",
        "AIOPS_KAFKA_ACTION_TOPIC": f"{topic}.actions",
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * MIB)
    await producer.start()
    try:
        with engine_process("serve", work, ["serve"], **settings) as engine:
            engine.producer, engine.topic = producer, topic
            yield engine
    finally:
        await producer.stop()


async def run(plan: Plan, work: Path) -> dict[str, Any]:
    scenario = load_scenario(BUNDLED_SCENARIO)
    start, end = scenario.span
    speed = max(1.0, (end - start) / plan.replay_seconds)
    playbooks = work / "playbooks"
    shutil.copytree(REPO / "playbooks", playbooks, ignore=shutil.ignore_patterns("tests"))
    outcomes: list[Outcome] = []
    async with contextlib.AsyncExitStack() as stack:
        running = stack.enter_context(engine_process("run", work / "run", ["run", "--speed", f"{speed:.3f}"]))
        watching = stack.enter_context(
            engine_process("watch", work / "watch", ["watch"], AIOPS_PLAYBOOK_DIR=str(playbooks))
        )
        serving = (
            await stack.enter_async_context(kafka_engine(plan.kafka_bootstrap, work / "serve"))
            if plan.kafka_bootstrap
            else None
        )
        engines = {
            engine.name: (engine, stack.enter_context(HealthProbe(engine.base)))
            for engine in (running, watching, serving)
            if engine is not None
        }
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=120))
        for hostile in plan.inputs():
            engine, probe = engines[hostile.target]
            if engine.alive:
                outcomes.append(await attack(engine, probe, hostile, playbooks))
        bombs = await _template_bombs(client, watching)
        clean = await asyncio.to_thread(clean_incidents, BUNDLED_SCENARIO, REPO / "playbooks")
        finished = running.alive and await _replay_done(client, running, timeout_s=plan.replay_seconds * 4 + 120)
        kept = await _incident_ids(client, running) if finished else set()
        after = await _after_replay(client, running) if finished else {}
        crashed = [engine.name for engine, _ in engines.values() if not engine.alive]
        logs = {engine.name: engine.log.read_text(errors="replace")[-3000:] for engine, _ in engines.values()}
    settings = [bad_setting(work / f"setting-{i}", name, values) for i, (name, values) in enumerate(plan.settings())]
    skipped = (
        [] if plan.kafka_bootstrap else ["kafka: no broker given (--kafka-bootstrap or AIOPS_TEST_KAFKA_BOOTSTRAP)"]
    )
    report = summarise(outcomes, settings, clean, kept, finished, after, crashed, logs)
    return report | {"template_bombs": bombs, "skipped": skipped}


def summarise(
    outcomes: list[Outcome],
    settings: list[dict[str, Any]],
    clean: set[str],
    kept: set[str],
    finished: bool,
    after: dict[str, Any],
    crashed: list[str],
    logs: dict[str, str],
) -> dict[str, Any]:
    lost = sorted(clean - kept) if finished else sorted(clean)
    findings = [outcome.report() | {"broke": outcome.breaks()} for outcome in outcomes if outcome.breaks()]
    refused_badly = [setting for setting in settings if not setting["ok"]]
    findings += [setting | {"broke": ["bad setting not refused in one line"]} for setting in refused_badly]
    return {
        "inputs_tried": len(outcomes) + len(settings),
        "crashes": len(crashed) + len(refused_badly),
        "server_errors": sum(outcome.server_errors for outcome in outcomes),
        "hung_seconds": round(max((outcome.stall_s for outcome in outcomes), default=0.0), 3),
        "max_rss_growth_mb": round(max((outcome.rss_growth_mb for outcome in outcomes), default=0.0), 1),
        "lost_incidents": len(lost),
        "lost_incidents_checked": (
            f"the replay's incidents by id against a clean backtest of the same scenario and playbooks "
            f"({len(clean)} incidents; replay {'finished' if finished else 'did not finish'}); missing: {lost}"
        ),
        "replay_finished": finished,
        "clean_incidents": len(clean),
        "after_replay": after,
        "findings": findings,
        "engines_exited": crashed,
        "engine_logs": {name: log for name, log in logs.items() if name in crashed},
        "inputs": [outcome.report() for outcome in outcomes],
        "settings": settings,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced corpus (the end-to-end test's)")
    parser.add_argument("--replay-seconds", type=float, default=60.0, help="how long the paced replay lasts")
    parser.add_argument(
        "--kafka-bootstrap",
        default=os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP"),
        help="a broker for the Kafka inputs (default: AIOPS_TEST_KAFKA_BOOTSTRAP; none: Kafka is not attacked)",
    )
    parser.add_argument("--only", default="", help="only the inputs whose name holds this text (to recheck one)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    plan = Plan(args.quick, args.replay_seconds, args.kafka_bootstrap, args.only)
    with tempfile.TemporaryDirectory(prefix="aiops-adversarial-") as work:
        result = asyncio.run(run(plan, Path(work)))
    if not args.json:
        for outcome in result["inputs"]:
            print(
                f"{outcome['input'][:60]:60} {outcome['engine']:5} {outcome['statuses']!s:12} "
                f"stall {outcome['stall_ms']:7.1f} ms  rss {outcome['rss_growth_mb']:+7.1f} MB"
            )
        for setting in result["settings"]:
            print(f"{setting['input'][:60]:60} exit {setting['exit']} lines {setting['stderr_lines']}")
    summary = {k: v for k, v in result.items() if args.json or k not in ("inputs", "settings")}
    print(json.dumps(summary, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
