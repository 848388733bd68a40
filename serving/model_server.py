"""Serves ``models:/<name>@<alias>`` from an MLflow registry over HTTP and follows the alias.

Every ``reload_s`` seconds the alias is resolved again; when it points at another version, that version is
downloaded and loaded beside the serving one, then swapped in, so requests never wait for a load. A failed reload
keeps the current model and counts an error. The reload task lives exactly as long as the app (its lifespan).

    python -m serving.model_server --model-uri models:/fraud@champion --tracking-uri http://mlflow:5000 --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
import uvicorn
from fastapi import FastAPI, HTTPException, Response
from mlflow.pyfunc import PyFuncModel, load_model
from mlflow.tracking import MlflowClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict

from serving.gpu import Nvml, register_gpu_metrics

log = logging.getLogger(__name__)
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
VALUE_BUCKETS = (-100.0, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0)
MAX_FEATURES = 16
MAX_SAFETY_CATEGORIES = 20


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[list[float]]


class PredictResponse(BaseModel):
    predictions: list[Any]
    model_version: str


@dataclass(frozen=True)
class _Loaded:
    version: str
    model: PyFuncModel


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "model_server_request_duration_seconds", "time to answer one /predict request", registry=registry
        )
        self.errors = Counter(
            "model_server_errors_total", "failed predictions and failed model reloads", ["stage"], registry=registry
        )
        for stage in ("predict", "reload"):
            self.errors.labels(stage)  # exported as 0 from the start, so rate() sees the first error
        self.version = Gauge(
            "model_server_model_version", "registry version of the model being served", registry=registry
        )
        # What drift detectors compare over time: the distribution of each input feature and of the predictions.
        self.features = Histogram(
            "model_server_input_feature_value",
            "values of the input features (the first 16 columns)",
            ["feature"],
            buckets=VALUE_BUCKETS,
            registry=registry,
        )
        self.predictions = Histogram(
            "model_server_prediction_value", "numeric predictions", buckets=VALUE_BUCKETS, registry=registry
        )
        # Prompt-based models answer rows like {"text": ..., "usage": {...}, "safety": [...]}.
        self.tokens = Counter(
            "model_server_tokens_total", "tokens of prompt-based models", ["direction"], registry=registry
        )
        self.safety = Counter(
            "model_server_safety_flags_total",
            "answers flagged by the model's safety checks",
            ["category"],
            registry=registry,
        )
        self._categories: set[str] = set()

    def observe(self, inputs: list[list[float]], predictions: list[Any]) -> None:
        for row in inputs:
            for index, value in enumerate(row[:MAX_FEATURES]):
                self.features.labels(str(index)).observe(value)
        for prediction in predictions:
            if isinstance(prediction, bool):
                continue
            if isinstance(prediction, int | float):
                self.predictions.observe(float(prediction))
            elif isinstance(prediction, dict):
                self._observe_generation(prediction)

    def _observe_generation(self, answer: dict[str, Any]) -> None:
        usage = answer.get("usage")
        if isinstance(usage, dict):
            for direction in ("input", "output"):
                count = usage.get(f"{direction}_tokens")
                if isinstance(count, int) and count >= 0:
                    self.tokens.labels(direction).inc(count)
        for flag in answer.get("safety") or []:
            self.safety.labels(self._category(str(flag))).inc()

    def _category(self, flag: str) -> str:
        """A bounded set of label values, whatever a model reports: the first few categories, then "other"."""
        category = flag[:40]
        if category not in self._categories and len(self._categories) >= MAX_SAFETY_CATEGORIES:
            return "other"
        self._categories.add(category)
        return category


class _Current:
    """The model being served: set by the lifespan before the app takes requests, then swapped by reloads."""

    def __init__(self, metrics: _Metrics) -> None:
        self._metrics = metrics
        self._loaded: _Loaded | None = None

    def get(self) -> _Loaded:
        if self._loaded is None:
            raise HTTPException(503, "no model is loaded yet")
        return self._loaded

    def swap(self, loaded: _Loaded) -> None:
        self._loaded = loaded
        self._metrics.version.set(float(loaded.version))


class _AliasedModel:
    """The model an alias points at, loaded from the registry into a private download folder."""

    def __init__(self, model_uri: str, tracking_uri: str, folder: Path) -> None:
        match = _MODEL_URI.match(model_uri)
        if match is None:
            raise ValueError(f"expected a model URI like models:/<name>@<alias>, got {model_uri!r}")
        self.name, self.alias = match["name"], match["alias"]
        self._tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._folder = folder

    def resolve(self) -> str:
        return str(self._client.get_model_version_by_alias(self.name, self.alias).version)

    def load(self, version: str) -> _Loaded:
        # download_artifacts ignores its registry_uri for models:/ URIs (it uses the process-wide one), so the
        # version's own artifact location is resolved here with this server's client.
        source = self._client.get_model_version_download_uri(self.name, version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, tracking_uri=self._tracking_uri, dst_path=str(self._folder / version)
        )
        return _Loaded(version, load_model(local))


def create_app(
    model_uri: str,
    tracking_uri: str,
    reload_s: float,
    registry: CollectorRegistry | None = None,
    nvml: Nvml | None = None,
) -> FastAPI:
    """The server's app; the first model is loaded at start-up, so a broken registry stops the start."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = _Metrics(registry)
    register_gpu_metrics(registry, nvml)
    current = _Current(metrics)

    def swap(loaded: _Loaded) -> None:
        current.swap(loaded)
        log.info("serving %s version %s", model_uri, loaded.version)

    async def follow(source: _AliasedModel) -> None:
        while True:
            await asyncio.sleep(reload_s)
            try:
                version = await asyncio.to_thread(source.resolve)
                if version != current.get().version:
                    swap(await asyncio.to_thread(source.load, version))
            except Exception:
                # The registry may be briefly away; the current model keeps serving until the next try.
                log.exception("reloading %s failed", model_uri)
                metrics.errors.labels("reload").inc()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="model-server-") as folder:
            source = _AliasedModel(model_uri, tracking_uri, Path(folder))
            swap(await asyncio.to_thread(lambda: source.load(source.resolve())))
            follower = asyncio.create_task(follow(source), name="follow-model-alias")
            try:
                yield
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower

    app = FastAPI(title="model server", lifespan=lifespan)

    @app.post("/predict")
    async def predict(request: PredictRequest) -> PredictResponse:
        loaded = current.get()
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(loaded.model.predict, request.inputs)
        except Exception as exc:
            metrics.errors.labels("predict").inc()
            raise HTTPException(500, f"prediction failed: {type(exc).__name__}") from exc
        finally:
            metrics.latency.observe(time.perf_counter() - started)
        predictions = _plain(result)
        metrics.observe(request.inputs, predictions)
        return PredictResponse(predictions=predictions, model_version=loaded.version)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model_version": current.get().version}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _plain(result: Any) -> list[Any]:
    """A model's output (list, numpy array, pandas Series or DataFrame) as JSON-ready rows."""
    if hasattr(result, "to_numpy"):
        result = result.to_numpy()
    if hasattr(result, "tolist"):
        result = result.tolist()
    return list(result)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.model_server", description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", required=True, help="models:/<name>@<alias>")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking/registry server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--reload-s", type=float, default=10.0, help="seconds between looks at the alias")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.model_uri, args.tracking_uri, args.reload_s)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
