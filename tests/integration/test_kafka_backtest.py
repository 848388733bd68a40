"""`aiops playbooks backtest --kafka-topic`: recorded samples read back from a real Kafka topic (``make test``
starts the broker and exports AIOPS_TEST_KAFKA_BOOTSTRAP) and replayed through the playbooks in dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.adapters.scenario_files import load_scenario
from engine.app.settings import BUNDLED_SCENARIO
from tests.support.engine_process import REPO

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]


async def _record_scenario(topic: str) -> None:
    """The bundled scenario's series on ``topic``, 60 points a message, plus one message that is not a sample."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for series in load_scenario(BUNDLED_SCENARIO).series:
            points = list(zip(series.timestamps.tolist(), series.values.tolist(), strict=True))
            for start in range(0, len(points), 60):
                await producer.send(
                    topic, encode_samples(series.key, points[start : start + 60]), key=series_key_bytes(series.key)
                )
        await producer.send(topic, b"{not json", key=b"broken")
        await producer.flush()
    finally:
        await producer.stop()


def _backtest(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    return subprocess.run(
        [sys.executable, "-c", "from engine.app.cli import main; main()", "playbooks", "backtest", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _by_incident(actions: list[dict[str, str]]) -> list[dict[str, str]]:
    """The actions sorted by incident, keeping each incident's steps in their order."""
    return sorted(actions, key=lambda action: action["incident"])


async def test_a_recorded_topic_backtests_like_the_same_data_from_files() -> None:
    assert BOOTSTRAP is not None
    topic = f"aiops-test-{uuid.uuid4().hex[:8]}.recorded"
    await _record_scenario(topic)

    from_kafka = _backtest("--kafka-topic", topic, "--kafka-bootstrap", BOOTSTRAP, "--json")
    from_files = _backtest("--scenario", str(BUNDLED_SCENARIO), "--json")

    assert from_kafka.returncode == 0, from_kafka.stderr
    kafka_report, file_report = json.loads(from_kafka.stdout), json.loads(from_files.stdout)
    assert kafka_report["samples"] == file_report["samples"] == 11 * 2880
    # The same actions; their order follows the batches the samples came in, which a topic's fetches cut otherwise
    # than the files' replay (the drift job can be planned before or after the rollback's steps).
    assert _by_incident(kafka_report["actions_planned"]) == _by_incident(file_report["actions_planned"])
    assert {a["playbook"] for a in kafka_report["actions_planned"]} >= {"latency-scale-out", "error-burst-rollback"}


def test_an_unknown_topic_or_an_unreachable_broker_is_one_clear_line() -> None:
    assert BOOTSTRAP is not None
    missing = _backtest("--kafka-topic", f"aiops-test-{uuid.uuid4().hex[:8]}.nothing", "--kafka-bootstrap", BOOTSTRAP)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
