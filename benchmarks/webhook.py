"""The Alertmanager webhook receiver under load, against a bare FastAPI endpoint that only parses the body.

    python -m benchmarks.webhook [--requests 15000] [--seconds 6] [--connections 16] [--rounds 3] [--json]

Each server runs in a process of its own on a loopback port (uvicorn, as the engine serves its API): ours is the
engine's ``POST /api/v1/alerts`` with bearer authentication, the notification kept in a SQLite store under its
body's digest (idempotency) and handed to the alert feed (drained as the pipeline would); the baseline is a plain
FastAPI endpoint that takes the same body as a pydantic model of the notification (same fields and limits) and
answers. Clients send realistic 5-alert notifications, each one
distinct (a duplicate would take the cheap path), over ``--connections`` keep-alive connections (the plain client
of ``benchmarks.loopback_http``, light next to the servers), until the request count or the time bound is reached,
in alternating rounds. It prints requests/s and p50/p99 latency for both and their ratio.
Target: ours >= 0.8 of the baseline's requests/s, p99 < 25 ms at 16 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from benchmarks.loopback_http import LoopbackConnection, start_server
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import TokenBook, hash_secret
from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.http_server import HttpServer, bind
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.app.interpreter import freeze_startup_objects
from engine.core.alert_feed import AlertFeed

TOKEN = "benchmark-ingest-token"
ALERTS_PER_NOTIFICATION = 5


def notification(index: int) -> bytes:
    """A 5-alert notification as Alertmanager sends it; ``index`` makes its content (and digest) unique."""
    alerts = []
    for number in range(ALERTS_PER_NOTIFICATION):
        labels = {
            "alertname": "ModelLatencyHigh",
            "model": f"model-{index % 50}",
            "namespace": "serving",
            "pod": f"model-{index % 50}-{number}",
            "severity": "warning",
            "job": "kserve",
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"p99 latency of model-{index % 50} is 0.{number + 5}s", "runbook": "x"},
                "startsAt": f"2026-11-26T10:{index % 60:02d}:{number:02d}.{index % 1000:03d}Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=histogram_quantile%280.99%2C+...%29",
                "fingerprint": f"{index:012x}{number:04x}",
            }
        )
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="ModelLatencyHigh", model="model-{index % 50}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": "ModelLatencyHigh", "model": f"model-{index % 50}"},
        "commonLabels": {"alertname": "ModelLatencyHigh", "namespace": "serving", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


class BaselineAlert(BaseModel):
    """An alert of the notification as a plain FastAPI receiver declares it (pydantic, Alertmanager's fields and
    the same limits as the engine's)."""

    model_config = ConfigDict(populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=128)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=128)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(default="", max_length=128)


class BaselineNotification(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=4096)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=512)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    alerts: list[BaselineAlert] = Field(max_length=10_000)


def _baseline_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/alerts")
    async def receive(notification: BaselineNotification) -> dict[str, int]:
        return {"accepted": len(notification.alerts)}

    return app


async def _serve(kind: str, port: int, database: str) -> None:
    """The server side, in its own process so that clients and server do not share one event loop."""
    if kind == "baseline":
        await HttpServer(_baseline_app(), bind("127.0.0.1", port)).serve()
        return
    store = await SqlStore.open(f"sqlite+aiosqlite:///{database}")
    feed = AlertFeed()
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        tokens=TokenBook(()),
        ingest=IngestCredentials.parse(hash_secret(TOKEN), ""),
        alerts=feed,
    )

    freeze_startup_objects()  # as `aiops serve` does once it is wired

    async def drain() -> None:
        # Stands in for the pipeline's incident stage, which takes every batch off the feed.
        async for _ in feed:
            pass

    async with asyncio.TaskGroup() as group:
        group.create_task(drain())
        group.create_task(HttpServer(app, bind("127.0.0.1", port)).serve())


async def _load(base: str, bodies: list[bytes], seconds: float, connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    streams = [await LoopbackConnection.open(base) for _ in range(connections)]
    # Warm-up: let the server import and compile what the first request needs.
    for number, stream in enumerate(streams):
        await stream.request("POST", "/api/v1/alerts", headers=headers, body=notification(10_000_000 + number))
    started = time.perf_counter()
    deadline = started + seconds

    async def client(stream: LoopbackConnection) -> None:
        nonlocal next_index, errors
        while next_index < len(bodies) and time.perf_counter() < deadline:
            body = bodies[next_index]
            next_index += 1
            sent = time.perf_counter()
            status, _ = await stream.request("POST", "/api/v1/alerts", headers=headers, body=body)
            latencies.append(time.perf_counter() - sent)
            if status != 200:
                errors += 1

    await asyncio.gather(*(client(stream) for stream in streams))
    elapsed = time.perf_counter() - started
    for stream in streams:
        stream.close()
    values = np.array(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


async def _measure(kind: str, bodies: list[bytes], seconds: float, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        server, base = start_server(
            "benchmarks.webhook", ["--serve", kind, "--database", str(Path(scratch) / "webhook.db")]
        )
        try:
            return await _load(base, bodies, seconds, connections)
        finally:
            server.terminate()
            server.wait(timeout=30)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    bodies = [notification(index) for index in range(args.requests)]
    # Rounds alternate the two servers, so a burst of load from elsewhere on the machine hits both alike; each
    # kind is reported by its median round.
    rounds: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": []}
    for _ in range(args.rounds):
        for kind, results in rounds.items():
            results.append(await _measure(kind, bodies, args.seconds, args.connections))
    baseline, ours = (sorted(rounds[k], key=lambda r: r["requests_per_s"])[len(rounds[k]) // 2] for k in rounds)
    ratio = ours["requests_per_s"] / baseline["requests_per_s"]
    return {
        "connections": args.connections,
        "alerts_per_notification": ALERTS_PER_NOTIFICATION,
        "body_bytes": len(bodies[0]),
        "rounds": args.rounds,
        "baseline": baseline,
        "ours": ours,
        "throughput_ratio": round(ratio, 3),
        "round_ratios": [
            round(o["requests_per_s"] / b["requests_per_s"], 3)
            for b, o in zip(rounds["baseline"], rounds["ours"], strict=True)
        ],
        "targets": {"ratio_at_least": 0.8, "p99_ms_below": 25.0},
        "meets_targets": ratio >= 0.8 and ours["p99_ms"] < 25.0 and ours["errors"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Rounds of several seconds: a round of a second or two moves the ratio by +-0.2 on a shared machine.
    parser.add_argument("--requests", type=int, default=15000, help="notifications per round and server")
    parser.add_argument("--seconds", type=float, default=6.0, help="time bound per round and server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.port, args.database))
        return
    result = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(result))
        return
    for kind in ("baseline", "ours"):
        r = result[kind]
        print(f"{kind:9s} {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms")
    print(f"ratio {result['throughput_ratio']:.3f} (target >= 0.8), p99 target < 25 ms: {result['meets_targets']}")


if __name__ == "__main__":
    main()
