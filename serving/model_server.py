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

log = logging.getLogger(__name__)
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


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
    model_uri: str, tracking_uri: str, reload_s: float, registry: CollectorRegistry | None = None
) -> FastAPI:
    """The server's app; the first model is loaded at start-up, so a broken registry stops the start."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = _Metrics(registry)
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
        return PredictResponse(predictions=_plain(result), model_version=loaded.version)

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
