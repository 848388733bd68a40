"""Which failures end the engine with one line and which exit status, instead of a traceback."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError

from engine.app.cli_common import EXIT_UNAVAILABLE, operator_fault


def test_brokers_that_cannot_be_reached_at_start_are_a_server_away_not_a_bug() -> None:
    # `aiops serve` started while the broker restarts: its publisher cannot bootstrap.
    verdict = operator_fault(BaseExceptionGroup("tasks", [KafkaConnectionError("Unable to bootstrap from [...]")]))
    assert verdict is not None
    assert verdict[0] == EXIT_UNAVAILABLE


def test_a_bug_is_not_an_operator_fault() -> None:
    assert operator_fault(KeyError("x")) is None
