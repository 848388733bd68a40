"""The ``alertmanager_silence`` backend against a real Alertmanager (``make test`` starts one with
scripts/services/prometheus.sh and exports its URL).

Every test silences its own made-up alert name and uses its own action IDs, so silences left by other tests (or
other runs against the same server) never enter its assertions; each test expires what it created.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from engine.adapters.actions.alertmanager_silences import AlertmanagerSilences, marker
from engine.core.actions.catalogue import AlertmanagerSilenceParams
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest
from tests.support.engine_process import free_port

ALERTMANAGER_URL = os.environ.get("AIOPS_TEST_ALERTMANAGER_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        ALERTMANAGER_URL is None,
        reason="AIOPS_TEST_ALERTMANAGER_URL is not set (make test starts Prometheus and Alertmanager)",
    ),
]


def request_for(params: AlertmanagerSilenceParams, incident_id: str) -> ActionRequest:
    return ActionRequest.create(
        id=f"act-{uuid.uuid4().hex[:20]}",
        incident_id=incident_id,
        playbook="silence-test",
        step=0,
        action="alertmanager_silence",
        params=params.model_dump(),
        mode=ActionMode.LIVE,
        requested_at=time.time(),
    )


@pytest.fixture
def alertname() -> str:
    """The alert this test silences; its requests name it as their incident too."""
    return f"AiopsSilenceTest{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def http(alertname: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client to look at Alertmanager directly; on the way out it expires this test's silences (found by
    their comment, which names the test's incident, so that even a silence with unexpected matchers goes)."""
    assert ALERTMANAGER_URL is not None
    async with httpx.AsyncClient(base_url=ALERTMANAGER_URL, timeout=5.0) as client:
        yield client
        for silence in (await client.get("/api/v2/silences")).json():
            if f"(incident {alertname}," in silence["comment"] and silence["status"]["state"] != "expired":
                await client.delete(f"/api/v2/silence/{silence['id']}")


@pytest.fixture
async def backend() -> AsyncIterator[AlertmanagerSilences]:
    assert ALERTMANAGER_URL is not None
    async with AlertmanagerSilences(ALERTMANAGER_URL, timeout_s=5.0) as silences:
        yield silences


async def silences_for(http: httpx.AsyncClient, alertname: str) -> list[dict[str, Any]]:
    """Every silence, in any state, with the matcher ``alertname="<alertname>"``."""
    reply = await http.get("/api/v2/silences", params={"filter": f'alertname="{alertname}"'})
    reply.raise_for_status()
    silences: list[dict[str, Any]] = reply.json()
    return silences


async def test_execute_creates_one_silence_that_alertmanager_shows(
    backend: AlertmanagerSilences, http: httpx.AsyncClient, alertname: str
) -> None:
    params = AlertmanagerSilenceParams(matchers={"alertname": alertname}, duration="30m", comment="fraud p99 high")
    request = request_for(params, alertname)
    before = time.time()

    sentence = await backend.execute(params, request)

    [silence] = await silences_for(http, alertname)
    assert sentence.startswith(f'created silence {silence["id"]} for {{alertname="{alertname}"}} until ')
    assert silence["status"] == {"state": "active"}
    assert silence["matchers"] == [{"name": "alertname", "value": alertname, "isRegex": False, "isEqual": True}]
    assert silence["createdBy"] == "aiops-engine"
    assert silence["comment"].startswith(f"fraud p99 high (incident {alertname}, playbook silence-test, step 0)")
    assert silence["comment"].endswith(marker(request.id))
    lasts = datetime.fromisoformat(silence["endsAt"]).timestamp() - before
    assert 30 * 60 - 5 < lasts < 30 * 60 + 5


async def test_execute_twice_for_one_request_leaves_one_silence_and_undo_expires_it(
    backend: AlertmanagerSilences, http: httpx.AsyncClient, alertname: str
) -> None:
    params = AlertmanagerSilenceParams(matchers={"alertname": alertname, "severity": "critical"})
    request = request_for(params, alertname)
    assert await backend.applied(params, request) is False

    await backend.execute(params, request)
    again = await backend.execute(params, request)

    [silence] = await silences_for(http, alertname)
    assert again.startswith(f"silence {silence['id']} for ")
    assert again.endswith("; not created again")
    assert await backend.applied(params, request) is True
    assert await backend.applied(params, request_for(params, alertname)) is False, (
        "another request's key must not match"
    )

    undone = await backend.undo(params, request)

    assert undone == f'expired silence {silence["id"]} for {{alertname="{alertname}", severity="critical"}}'
    reply = await http.get(f"/api/v2/silence/{silence['id']}")
    assert reply.json()["status"] == {"state": "expired"}
    assert await backend.applied(params, request) is False
    assert "nothing to expire" in await backend.undo(params, request)


async def test_a_new_request_after_undo_creates_a_new_silence(
    backend: AlertmanagerSilences, http: httpx.AsyncClient, alertname: str
) -> None:
    params = AlertmanagerSilenceParams(matchers={"alertname": alertname})
    first, second = request_for(params, alertname), request_for(params, alertname)
    await backend.execute(params, first)
    await backend.undo(params, first)
    await backend.execute(params, second)
    states = sorted(silence["status"]["state"] for silence in await silences_for(http, alertname))
    assert states == ["active", "expired"]


@pytest.mark.parametrize(
    ("matchers", "reason"),
    [
        ({"alertname": ""}, "at least one matcher must not match the empty string"),
        ({"bad-name": "x"}, "invalid label name"),
    ],
)
async def test_a_silence_alertmanager_rejects_is_a_permanent_error(
    backend: AlertmanagerSilences, http: httpx.AsyncClient, alertname: str, matchers: dict[str, str], reason: str
) -> None:
    params = AlertmanagerSilenceParams(matchers=matchers)
    with pytest.raises(PermanentError, match=f"HTTP 400; Alertmanager said: silence invalid: .*{reason}"):
        await backend.execute(params, request_for(params, alertname))


async def test_a_wrong_port_is_a_temporary_error_at_once(alertname: str) -> None:
    params = AlertmanagerSilenceParams(matchers={"alertname": alertname})
    started = time.monotonic()
    async with AlertmanagerSilences(f"http://127.0.0.1:{free_port()}", timeout_s=5.0) as unreachable:
        with pytest.raises(TemporaryError, match="cannot reach Alertmanager"):
            await unreachable.execute(params, request_for(params, alertname))
    assert time.monotonic() - started < 2.0


async def test_a_wrong_path_is_a_permanent_error(alertname: str) -> None:
    assert ALERTMANAGER_URL is not None
    params = AlertmanagerSilenceParams(matchers={"alertname": alertname})
    async with AlertmanagerSilences(f"{ALERTMANAGER_URL}/no-such-prefix") as misconfigured:
        with pytest.raises(PermanentError, match="HTTP 404"):
            await misconfigured.execute(params, request_for(params, alertname))
