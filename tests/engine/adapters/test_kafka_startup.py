"""Starting a Kafka client while no broker answers: tried again up to the limit, then stopped and the error raised."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from engine.adapters.kafka.startup import start_when_reachable


class _Client:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.stopped = False

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9, ...)]")

    async def stop(self) -> None:
        self.stopped = True


async def test_a_client_that_connects_on_its_third_try_is_started_and_left_running() -> None:
    client = _Client(failures=2)
    await start_when_reachable(client.start, stop=client.stop, what="consumer", limit_s=30.0)
    assert (client.starts, client.stopped) == (3, False)


async def test_with_no_wait_one_failed_try_stops_the_client_and_raises() -> None:
    client = _Client(failures=1)
    with pytest.raises(KafkaConnectionError):
        await start_when_reachable(client.start, stop=client.stop, what="consumer", limit_s=0.0)
    assert (client.starts, client.stopped) == (1, True)


async def test_an_error_that_is_not_about_reaching_a_broker_is_not_tried_again() -> None:
    client = _Client(failures=0)

    async def refused() -> None:
        client.starts += 1
        raise PermissionError("not authorised")

    with pytest.raises(PermissionError):
        await start_when_reachable(refused, stop=client.stop, what="consumer", limit_s=30.0)
    assert (client.starts, client.stopped) == (1, True)
