"""The incidents API under load, on SQLite and on PostgreSQL, each holding 100,000 incidents.

    python -m benchmarks.api [--incidents 100000] [--seconds 10] [--connections 8] [--postgres-url URL] [--json]

For each database the engine's API is served by uvicorn in a process of its own on a loopback port, and
clients list incident pages (50 per page at random depths, reached with the API's keyset cursors; half of them
filtered by state) and acknowledge distinct open incidents for a bounded time, over keep-alive connections of the
light client in ``benchmarks.loopback_http`` (so that the client's own cost stays small next to the server's).
It prints requests/s and p50/p99 latency per operation and database, and the PostgreSQL/SQLite ratios.
Target: list pages under 50 ms p99.
PostgreSQL is measured when --postgres-url (or AIOPS_TEST_POSTGRES_URL) names a server; its database is emptied
first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.loopback_http import LoopbackConnection, start_server
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import ApiToken, Role, TokenBook, hash_secret
from engine.adapters.api.cursors import cursor_for
from engine.adapters.http_server import HttpServer, bind
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.store.tables import IncidentRow
from engine.adapters.telemetry import EngineMetrics
from engine.app.bootstrap import RecountingDecisions
from engine.app.interpreter import freeze_startup_objects
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import SystemClock

SECRET = "benchmark-secret"
PAGE = 50


@dataclass
class Latencies:
    samples: list[float]
    errors: int = 0

    def summary(self, seconds: float) -> dict[str, float]:
        values = np.array(self.samples) * 1000 if self.samples else np.array([0.0])
        return {
            "requests": len(self.samples),
            "errors": self.errors,
            "requests_per_s": round(len(self.samples) / seconds, 1),
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
        }


async def _fill(url: str, count: int, started: float) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        for lo in range(0, count, 5000):
            rows = [
                {
                    "id": f"inc-bench-{i:07d}",
                    "fingerprint": f'anomaly:bench_metric{{series="{i}"}}',
                    "title": f"Anomalous bench_metric on series {i}",
                    "series_name": "bench_metric",
                    "series_labels": {"series": str(i)},
                    "severity": 2,
                    "state": "open" if i % 3 else "resolved",
                    "opened_at": started + i * 60,
                    "last_signal_at": started + i * 60,
                    "signal_count": 3,
                    "peak_score": 0.999,
                    "resolved_at": None,
                }
                for i in range(lo, min(lo + 5000, count))
            ]
            await connection.execute(insert(IncidentRow), rows)
    # Statistics and (on PostgreSQL) the visibility map as a database in service has them: otherwise the server's
    # own background vacuum of the fresh table runs during the measurement.
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE incidents"))
    else:
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    await engine.dispose()


async def _empty_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def _serve(url: str, port: int) -> None:
    """The server side, run in its own process so that clients and server do not share one event loop."""
    store = await SqlStore.open(url)
    tokens = TokenBook([ApiToken("bench", Role.ADMIN, hash_secret(SECRET))])
    metrics = EngineMetrics(CollectorRegistry())
    # As the engine wires it: decisions also keep the incidents-by-state gauge counted.
    desk = IncidentDesk(RecountingDecisions(store, metrics), IncidentManager(IncidentPolicy()), SystemClock())
    app = create_app(store=store, metrics=metrics, status=dict, tokens=tokens, desk=desk)
    freeze_startup_objects()  # as `aiops serve` does once it is wired
    await HttpServer(app, bind("127.0.0.1", port)).serve()


async def _measure(url: str, count: int, seconds: float, connections: int) -> dict[str, Any]:
    store = await SqlStore.open(url)  # migrates the schema
    await store.close()
    fill_started = time.perf_counter()
    first_opened = time.time() - count * 60
    await _fill(url, count, first_opened)
    fill_s = time.perf_counter() - fill_started
    server, base = start_server("benchmarks.api", ["--serve", url])
    open_ids = [f"inc-bench-{i:07d}" for i in range(count) if i % 3]
    random.Random(7).shuffle(open_ids)
    lists, acks = Latencies([]), Latencies([])
    deadline = time.perf_counter() + seconds
    rng = random.Random(11)

    async def client() -> None:
        headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        http = await LoopbackConnection.open(base)
        turn = 0
        try:
            while time.perf_counter() < deadline:
                turn += 1
                began = time.perf_counter()
                if turn % 2:
                    deep = rng.randrange(PAGE, count)
                    query: dict[str, Any] = {
                        "limit": PAGE,
                        "cursor": cursor_for(first_opened + deep * 60, f"inc-bench-{deep:07d}"),
                    }
                    if turn % 4 == 1:
                        query["state"] = "open"
                    status, _ = await http.request("GET", f"/api/v1/incidents?{urlencode(query)}", headers=headers)
                    target = lists
                else:
                    incident_id = open_ids.pop() if open_ids else "none"
                    status, _ = await http.request(
                        "POST", f"/api/v1/incidents/{incident_id}/ack", headers=headers, body=b"{}"
                    )
                    target = acks
                if status == 200:
                    target.samples.append(time.perf_counter() - began)
                else:
                    target.errors += 1
        finally:
            http.close()

    try:
        await asyncio.gather(*(client() for _ in range(connections)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "incidents": count,
        "fill_s": round(fill_s, 2),
        "list": lists.summary(seconds),
        "ack": acks.summary(seconds),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": args.seconds, "connections": args.connections, "page_size": PAGE}
    with tempfile.TemporaryDirectory() as work:
        sqlite_url = f"sqlite+aiosqlite:///{Path(work) / 'bench.db'}"
        results["sqlite"] = await _measure(sqlite_url, args.incidents, args.seconds, args.connections)
    if args.postgres_url:
        await _empty_postgres(args.postgres_url)
        results["postgres"] = await _measure(args.postgres_url, args.incidents, args.seconds, args.connections)
        for operation in ("list", "ack"):
            sqlite_rate = results["sqlite"][operation]["requests_per_s"] or 1.0
            results[f"{operation}_throughput_ratio_postgres_vs_sqlite"] = round(
                results["postgres"][operation]["requests_per_s"] / sqlite_rate, 2
            )
    databases = [db for db in ("sqlite", "postgres") if db in results]
    results["list_p99_under_50ms"] = all(results[db]["list"]["p99_ms"] < 50 for db in databases)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--postgres-url", default=os.environ.get("AIOPS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.port))
        return
    results = asyncio.run(_run(args))
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
        return
    for db in ("sqlite", "postgres"):
        if db in results:
            for operation in ("list", "ack"):
                figures = results[db][operation]
                print(
                    f"{db:9} {operation:5} {figures['requests_per_s']:8.1f} req/s  p50 {figures['p50_ms']:7.2f} ms"
                    f"  p99 {figures['p99_ms']:7.2f} ms  errors {figures['errors']}"
                )
    print(f"list pages under 50 ms p99: {results['list_p99_under_50ms']}")


if __name__ == "__main__":
    main()
