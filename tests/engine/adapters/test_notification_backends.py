"""The webhook and Grafana action backends against real HTTP servers on loopback.

The webhook receiver is what a user would point the action at: any HTTP endpoint, here one that records what it
gets. No Grafana server can be installed where these tests run, so the Grafana backend talks to a small server
that implements the three endpoints it uses with the request and response shapes of Grafana's Annotations HTTP API
(``POST /api/annotations`` answering ``{"message": "Annotation added", "id": N}``, ``GET /api/annotations`` with
repeated ``tags`` (all must match) and ``type``, ``limit``, ``dashboardUID``, answering a list of annotation
objects, ``DELETE /api/annotations/<id>``, and ``{"message": ...}`` bodies on errors); it rewrites tags as Grafana's
store does (``key:value`` pairs, trimmed, a third part dropped). The tests check the exact requests the backend
sends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.adapters.actions.alertmanager_silences import AlertmanagerSilences
from engine.adapters.actions.grafana_annotations import GrafanaAnnotations
from engine.adapters.actions.notifications import WebhookNotifier
from engine.core.actions.catalogue import (
    ActionParams,
    AlertmanagerSilenceParams,
    GrafanaAnnotateParams,
    RolloutRestartParams,
    WebhookNotifyParams,
)
from engine.core.actions.executor import ActionBackend, ActionExecutor, RetryPolicy
from engine.core.memory import InMemoryLedger
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification, Verify
from engine.domain.clock import FakeClock
from engine.domain.errors import ConfigurationError, PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionStatus, SeriesKey
from tests.support.engine_process import free_port

TOKEN = "glsa_test-service-account-token"
NOW = 1_750_000_000.0
NO_WAIT = RetryPolicy(attempts=3, first_backoff_s=0.0, max_backoff_s=0.0, timeout_s=2.0)


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Raw:
    """An answer sent as it is, for servers that do not answer JSON."""

    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


# Answers one request: (status, JSON body); None for no body, a Raw for anything else.
Responder = Callable[[Received], tuple[int, object]]


@dataclass
class Recorder:
    """A threaded HTTP server on a free loopback port that records every request and lets ``respond`` answer."""

    respond: Responder
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {name.lower(): value for name, value in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                recorder.received.append(request)
                status, body = recorder.respond(request)
                if isinstance(body, Raw):
                    data, headers = body.data, body.headers
                else:
                    data = b"" if body is None else json.dumps(body).encode()
                    headers = {"Content-Type": "application/json"}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Responder], Recorder]]:
    servers: list[Recorder] = []

    def start(respond: Responder) -> Recorder:
        servers.append(Recorder(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def request_for(action: str, params: ActionParams, id: str = "act-0123456789abcdef0123") -> ActionRequest:
    return ActionRequest.create(
        id=id,
        incident_id="inc-42",
        playbook="fraud-latency",
        step=2,
        action=action,
        params=params.model_dump(),
        mode=ActionMode.LIVE,
        requested_at=NOW,
    )


# --- webhook_notify ---------------------------------------------------------------------------------------------


@pytest.fixture
async def notifier() -> AsyncIterator[WebhookNotifier]:
    async with WebhookNotifier(timeout_s=2.0) as backend:
        yield backend


async def test_slack_format_posts_a_slack_compatible_body_with_the_idempotency_key(
    serve: Callable[[Responder], Recorder], notifier: WebhookNotifier
) -> None:
    hook = serve(lambda _: (200, None))
    params = WebhookNotifyParams(url=f"{hook.url}/services/T0/B0/secret", message="fraud p99 high", format="slack")
    request = request_for("webhook_notify", params)

    sentence = await notifier.execute(params, request)

    [got] = hook.received
    assert (got.method, got.path) == ("POST", "/services/T0/B0/secret")
    assert got.body == {"text": "fraud p99 high"}
    assert got.headers["idempotency-key"] == request.id
    assert got.headers["content-type"] == "application/json"
    assert sentence == f"posted a slack notification to {hook.url} (HTTP 200)"
    assert "secret" not in sentence


async def test_json_format_carries_the_incident_and_repeats_keep_the_same_key(
    serve: Callable[[Responder], Recorder], notifier: WebhookNotifier
) -> None:
    hook = serve(lambda _: (202, {"ok": True}))
    params = WebhookNotifyParams(url=f"{hook.url}/hook", message="rolled back the model")
    request = request_for("webhook_notify", params)

    await notifier.execute(params, request)
    await notifier.execute(params, request)

    assert [got.body for got in hook.received] == [
        {
            "message": "rolled back the model",
            "incident_id": "inc-42",
            "playbook": "fraud-latency",
            "step": 2,
            "action_id": request.id,
        }
    ] * 2
    assert {got.headers["idempotency-key"] for got in hook.received} == {request.id}
    # At least once: nothing tells whether an earlier POST arrived, and a notification cannot be taken back.
    assert await notifier.applied(params, request) is False
    with pytest.raises(PermanentError, match="cannot be undone"):
        await notifier.undo(params, request)


@pytest.mark.parametrize(
    ("public_url", "actions"),
    [
        ("", None),
        (
            "https://aiops.example.com/",
            [
                {
                    "type": "Action.OpenUrl",
                    "title": "Open the incident",
                    "url": "https://aiops.example.com/ui/incidents/inc-42",
                }
            ],
        ),
    ],
)
async def test_teams_format_posts_a_workflows_message_with_an_adaptive_card(
    serve: Callable[[Responder], Recorder], public_url: str, actions: list[dict[str, str]] | None
) -> None:
    hook = serve(lambda _: (202, None))
    # Teams Workflows URLs carry their signature in the query string.
    url = f"{hook.url}/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=secret"
    params = WebhookNotifyParams(url=url, message="fraud p99 high: *scaled* out", format="teams")
    request = request_for("webhook_notify", params)
    async with WebhookNotifier(timeout_s=2.0, public_url=public_url) as notifier:
        sentence = await notifier.execute(params, request)

    [got] = hook.received
    assert got.body["type"] == "message"
    [attachment] = got.body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    text, facts = card["body"]
    assert text == {
        "type": "TextBlock",
        "text": "fraud p99 high: *scaled* out",
        "wrap": True,
        "weight": "Bolder",
        "size": "Medium",
    }
    assert facts == {
        "type": "FactSet",
        "facts": [
            {"title": "Incident", "value": "inc-42"},
            {"title": "Playbook", "value": "fraud-latency"},
            {"title": "Step", "value": "3"},
            {"title": "Action ID", "value": request.id},
        ],
    }
    assert card.get("actions") == actions
    assert got.headers["idempotency-key"] == request.id
    assert sentence == f"posted a teams notification to {hook.url} (HTTP 202)"
    assert "secret" not in sentence


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, TemporaryError), (429, TemporaryError), (400, PermanentError), (404, PermanentError)],
)
async def test_webhook_refusals_map_to_temporary_or_permanent_errors(
    serve: Callable[[Responder], Recorder], notifier: WebhookNotifier, status: int, error: type[Exception]
) -> None:
    hook = serve(lambda _: (status, {"error": "no"}))
    params = WebhookNotifyParams(url=f"{hook.url}/hook/secret", message="m")
    with pytest.raises(error, match=f"HTTP {status}") as raised:
        await notifier.execute(params, request_for("webhook_notify", params))
    assert "secret" not in str(raised.value)


async def test_a_closed_port_is_a_temporary_error(notifier: WebhookNotifier) -> None:
    params = WebhookNotifyParams(url=f"http://127.0.0.1:{free_port()}/hook", message="m")
    with pytest.raises(TemporaryError, match="cannot reach the webhook"):
        await notifier.execute(params, request_for("webhook_notify", params))


async def test_the_executor_retries_a_503_with_the_same_idempotency_key(
    serve: Callable[[Responder], Recorder], notifier: WebhookNotifier
) -> None:
    answers = iter([503, 200])
    hook = serve(lambda _: (next(answers), None))
    params = WebhookNotifyParams(url=f"{hook.url}/hook", message="m")
    backends: dict[str, ActionBackend] = {"webhook_notify": notifier}
    executor = ActionExecutor(InMemoryLedger(), FakeClock(NOW), backends, retry=NO_WAIT, owner="test")

    result = await executor.execute(request_for("webhook_notify", params))

    assert result.status is ActionStatus.SUCCEEDED
    assert [got.headers["idempotency-key"] for got in hook.received] == [result.request.id] * 2


# --- grafana_annotate -------------------------------------------------------------------------------------------


def grafana_tag_pairs(tags: list[str]) -> list[tuple[str, str]]:
    """Tags as Grafana reads them: ``key:value`` split at the colons (a third part is dropped), both halves trimmed
    of spaces, empty keys and repeated pairs left out."""
    pairs: list[tuple[str, str]] = []
    for tag in tags:
        key, _, rest = tag.partition(":")
        pair = (key.strip(" "), rest.split(":")[0].strip(" "))
        if pair[0] and pair not in pairs:
            pairs.append(pair)
    return pairs


class FakeGrafana:
    """Grafana's annotation endpoints over an in-memory table, served under ``prefix`` (Grafana's sub-path);
    ``fail_with`` makes every call answer that status."""

    def __init__(self, prefix: str = "", dashboards: tuple[str, ...] = ("fraud-overview",)) -> None:
        self.prefix = prefix
        self.dashboards = dashboards
        self.annotations: dict[int, dict[str, Any]] = {}
        self.fail_with: int | None = None
        self._next_id = 1

    def __call__(self, request: Received) -> tuple[int, object]:
        if self.fail_with is not None:
            return self.fail_with, {"message": f"failing with {self.fail_with} on purpose"}
        if not request.path.startswith(f"{self.prefix}/api/"):
            return 404, {"message": "Not found"}
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key", "messageId": "api-key.invalid", "statusCode": 401}
        path = request.path.removeprefix(self.prefix)
        if request.method == "POST" and path == "/api/annotations":
            return self._create(request.body)
        if request.method == "GET" and path == "/api/annotations":
            return self._find(request.query)
        if request.method == "DELETE" and path.startswith("/api/annotations/"):
            return self._delete(int(path.rsplit("/", 1)[1]))
        return 404, {"message": "Not found"}

    def _create(self, body: dict[str, Any]) -> tuple[int, object]:
        if not isinstance(body.get("time"), int) or not body.get("text"):
            return 400, {"message": "bad request data"}
        dashboard_uid = body.get("dashboardUID")
        if dashboard_uid and dashboard_uid not in self.dashboards:
            return 400, {"message": "Invalid dashboard UID in annotation request"}
        time_end = body.get("timeEnd") or body["time"]
        annotation_id, self._next_id = self._next_id, self._next_id + 1
        pairs = grafana_tag_pairs(list(body.get("tags") or []))
        self.annotations[annotation_id] = {
            "id": annotation_id,
            "alertId": 0,
            "dashboardId": self.dashboards.index(dashboard_uid) + 1 if dashboard_uid else 0,
            "dashboardUID": dashboard_uid,
            "panelId": body.get("panelId") or 0,
            "userId": 1,
            "newState": "",
            "prevState": "",
            "created": body["time"],
            "updated": body["time"],
            "time": min(body["time"], time_end),
            "timeEnd": max(body["time"], time_end),
            "text": body["text"],
            "tags": [f"{key}:{value}" if value else key for key, value in pairs],
            "login": "sa-aiops",
            "email": "",
            "avatarUrl": "",
            "data": {},
        }
        return 200, {"message": "Annotation added", "id": annotation_id}

    def _find(self, query: dict[str, list[str]]) -> tuple[int, object]:
        wanted = set(grafana_tag_pairs(query.get("tags", [])))  # every one must match
        limit = int(query.get("limit", ["100"])[0])
        kind = query.get("type", [""])[0]
        found = [
            annotation
            for annotation in self.annotations.values()
            if wanted <= set(grafana_tag_pairs(annotation["tags"]))
            and ("dashboardUID" not in query or annotation["dashboardUID"] == query["dashboardUID"][0])
            and (kind != "alert" or annotation["alertId"] > 0)
            and (kind != "annotation" or annotation["alertId"] == 0)
        ]
        return 200, sorted(found, key=lambda annotation: (-annotation["timeEnd"], -annotation["time"]))[:limit]

    def _delete(self, annotation_id: int) -> tuple[int, object]:
        if self.annotations.pop(annotation_id, None) is None:
            return 404, {"message": "Annotation not found"}
        return 200, {"message": "Annotation deleted"}


@pytest.fixture
def grafana(serve: Callable[[Responder], Recorder]) -> tuple[FakeGrafana, Recorder]:
    fake = FakeGrafana()
    return fake, serve(fake)


@pytest.fixture
async def annotator(grafana: tuple[FakeGrafana, Recorder]) -> AsyncIterator[GrafanaAnnotations]:
    async with GrafanaAnnotations(grafana[1].url, TOKEN, timeout_s=2.0, clock=FakeClock(NOW)) as backend:
        yield backend


def calls(server: Recorder) -> list[tuple[str, str]]:
    return [(got.method, got.path) for got in server.received]


async def test_execute_sends_the_annotation_grafana_expects_and_only_once(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    fake, server = grafana
    params = GrafanaAnnotateParams(text="rolled back fraud model", tags=["fraud"], dashboard_uid="fraud-overview")
    request = request_for("grafana_annotate", params)

    first = await annotator.execute(params, request)
    again = await annotator.execute(params, request)

    search = ("GET", "/api/annotations")
    assert calls(server) == [search, ("POST", "/api/annotations"), search]
    _, post, _ = server.received
    assert post.body == {
        "dashboardUID": "fraud-overview",
        "time": int(NOW * 1000),
        "timeEnd": int(NOW * 1000),
        "tags": ["fraud", "aiops", "aiops-incident:inc-42", f"aiops-action:{request.id}"],
        "text": "rolled back fraud model",
    }
    assert post.headers["content-type"] == "application/json"
    for got in server.received:
        assert got.headers["authorization"] == f"Bearer {TOKEN}"
        assert got.headers["accept"] == "application/json"
        assert got.headers["user-agent"] == "aiops-engine"
    assert server.received[0].query == {
        "tags": [f"aiops-action:{request.id}"],
        "type": ["annotation"],
        "limit": ["100"],
    }
    assert first == "added annotation 1 on dashboard fraud-overview: rolled back fraud model"
    assert again == "annotation 1 on dashboard fraud-overview is already in place; not added again"
    assert list(fake.annotations) == [1]
    assert fake.annotations[1]["dashboardId"] == 1


async def test_an_organization_wide_annotation_has_no_dashboard_and_tags_are_not_doubled(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    fake, server = grafana
    params = GrafanaAnnotateParams(text="silenced", tags=["aiops", "deploy"])
    request = request_for("grafana_annotate", params)
    sentence = await annotator.execute(params, request)
    [post] = [got for got in server.received if got.method == "POST"]
    assert post.body == {
        "time": int(NOW * 1000),
        "timeEnd": int(NOW * 1000),
        "tags": ["aiops", "deploy", "aiops-incident:inc-42", f"aiops-action:{request.id}"],
        "text": "silenced",
    }
    assert fake.annotations[1]["dashboardUID"] is None
    assert sentence == "added annotation 1 on all dashboards: silenced"


async def test_playbook_tags_that_grafana_rewrites_do_not_hide_the_annotation(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    fake, server = grafana
    params = GrafanaAnnotateParams(text="t", tags=["team : fraud", "release:v1:canary", "team:fraud"])
    request = request_for("grafana_annotate", params)

    await annotator.execute(params, request)

    assert fake.annotations[1]["tags"] == [
        "team:fraud",
        "release:v1",
        "aiops",
        "aiops-incident:inc-42",
        f"aiops-action:{request.id}",
    ]
    assert await annotator.applied(params, request) is True
    await annotator.execute(params, request)
    assert [got.method for got in server.received].count("POST") == 1


async def test_applied_and_undo_find_the_annotation_by_its_action_tag_only(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    fake, server = grafana
    params = GrafanaAnnotateParams(text="restarted pods")
    ours = request_for("grafana_annotate", params, id="act-ours")
    theirs = request_for("grafana_annotate", params, id="act-theirs")
    await annotator.execute(params, theirs)
    assert await annotator.applied(params, ours) is False

    await annotator.execute(params, ours)
    assert await annotator.applied(params, ours) is True

    assert await annotator.undo(params, ours) == "deleted annotation 2"
    assert [call for call in calls(server) if call[0] == "DELETE"] == [("DELETE", "/api/annotations/2")]
    assert await annotator.applied(params, ours) is False
    assert list(fake.annotations) == [1]
    assert await annotator.applied(params, theirs) is True
    assert await annotator.undo(params, ours) == "no annotation made by this action is left; nothing to delete"


async def test_an_action_id_with_query_characters_is_still_found(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    params = GrafanaAnnotateParams(text="t")
    odd = request_for("grafana_annotate", params, id="act 1&tags=x#y")
    await annotator.execute(params, odd)
    assert grafana[1].received[0].query["tags"] == ["aiops-action:act 1&tags=x#y"]
    assert await annotator.applied(params, odd) is True
    assert await annotator.applied(params, request_for("grafana_annotate", params, id="act 1")) is False


async def test_a_failed_verification_undoes_the_annotation_through_the_executor(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    params = GrafanaAnnotateParams(text="scaled up")
    backends: dict[str, ActionBackend] = {"grafana_annotate": annotator}
    ledger = InMemoryLedger()
    executor = ActionExecutor(ledger, FakeClock(NOW), backends, retry=NO_WAIT, owner="test")
    request = request_for("grafana_annotate", params)
    verify = Verify(condition="value < 0.5", within=300)
    verification = PendingVerification(request, verify, SeriesKey.of("latency_p99", {}), {}, started_at=NOW)
    await ledger.plan([PlannedStep(request, Guards(), verification)], at=NOW)
    [claimed] = await executor.claim_due(1)
    result = await executor.run_claimed(claimed)
    assert result is not None
    assert result.status is ActionStatus.VERIFYING
    assert len(grafana[0].annotations) == 1

    result = await executor.finish_verification(request, passed=False, reason="p99 still high", undo=True)

    assert result.status is ActionStatus.UNDONE
    assert "deleted annotation 1" in result.detail
    assert grafana[0].annotations == {}


@pytest.mark.parametrize("suffix", ["/grafana", "/grafana/"])
async def test_a_url_with_a_path_prefix_reaches_the_api_under_it(
    serve: Callable[[Responder], Recorder], suffix: str
) -> None:
    fake = FakeGrafana(prefix="/grafana")
    server = serve(fake)
    params = GrafanaAnnotateParams(text="t")
    request = request_for("grafana_annotate", params)
    async with GrafanaAnnotations(f"{server.url}{suffix}", TOKEN) as backend:
        await backend.execute(params, request)
        assert await backend.applied(params, request) is True
        await backend.undo(params, request)
    search = ("GET", "/grafana/api/annotations")
    assert calls(server) == [
        search,
        ("POST", "/grafana/api/annotations"),
        search,
        search,
        ("DELETE", "/grafana/api/annotations/1"),
    ]
    assert fake.annotations == {}


@pytest.mark.parametrize(
    "url",
    ["grafana.example:3000", "ftp://grafana.example", "http://grafana.example:http", "http://grafana.example/?orgId=1"],
)
def test_a_grafana_url_that_cannot_work_is_refused_when_configured(url: str) -> None:
    with pytest.raises(ConfigurationError, match="must be http"):
        GrafanaAnnotations(url, TOKEN)


async def test_credentials_in_the_url_stay_out_of_error_messages() -> None:
    params = GrafanaAnnotateParams(text="t")
    port = free_port()
    async with GrafanaAnnotations(f"http://admin:s3cret@127.0.0.1:{port}", TOKEN) as backend:
        with pytest.raises(TemporaryError, match="cannot reach Grafana") as raised:
            await backend.execute(params, request_for("grafana_annotate", params))
    assert f"at http://127.0.0.1:{port} " in str(raised.value)
    assert "s3cret" not in str(raised.value)


async def test_a_rejected_token_is_permanent(grafana: tuple[FakeGrafana, Recorder]) -> None:
    params = GrafanaAnnotateParams(text="t")
    async with GrafanaAnnotations(grafana[1].url, "wrong-token") as backend:
        with pytest.raises(PermanentError, match="HTTP 401; Grafana said: invalid API key"):
            await backend.execute(params, request_for("grafana_annotate", params))
    assert grafana[0].annotations == {}


async def test_an_unknown_dashboard_is_permanent_with_grafanas_reason(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations
) -> None:
    params = GrafanaAnnotateParams(text="t", dashboard_uid="no-such-dashboard")
    with pytest.raises(PermanentError, match="add an annotation: HTTP 400; Grafana said: Invalid dashboard UID"):
        await annotator.execute(params, request_for("grafana_annotate", params))
    assert grafana[0].annotations == {}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TemporaryError),
        (503, TemporaryError),
        (409, TemporaryError),
        (429, TemporaryError),
        (403, PermanentError),
        (400, PermanentError),
    ],
)
async def test_grafana_errors_map_to_temporary_or_permanent(
    grafana: tuple[FakeGrafana, Recorder], annotator: GrafanaAnnotations, status: int, error: type[Exception]
) -> None:
    grafana[0].fail_with = status
    params = GrafanaAnnotateParams(text="t")
    with pytest.raises(error, match=f"HTTP {status}.*; Grafana said: failing with {status} on purpose"):
        await annotator.execute(params, request_for("grafana_annotate", params))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((200, Raw(b"<html>proxy sign-in</html>", {"Content-Type": "text/html"})), "Grafana's answer is not JSON"),
        ((302, Raw(b"", {"Location": "/login"})), "HTTP 302; Grafana said: redirected to /login"),
        ((200, {"message": "Annotation added"}), "something other than a list"),
    ],
)
async def test_answers_that_are_not_grafanas_are_permanent(
    serve: Callable[[Responder], Recorder], answer: tuple[int, object], message: str
) -> None:
    server = serve(lambda _: answer)
    params = GrafanaAnnotateParams(text="t")
    async with GrafanaAnnotations(server.url, TOKEN) as backend:
        with pytest.raises(PermanentError, match=message):
            await backend.applied(params, request_for("grafana_annotate", params))


async def test_an_added_annotation_without_an_id_is_permanent(serve: Callable[[Responder], Recorder]) -> None:
    server = serve(lambda got: (200, [] if got.method == "GET" else {"message": "Annotation added"}))
    params = GrafanaAnnotateParams(text="t")
    async with GrafanaAnnotations(server.url, TOKEN) as backend:
        with pytest.raises(PermanentError, match="answered without an annotation ID"):
            await backend.execute(params, request_for("grafana_annotate", params))


async def test_undo_tolerates_an_annotation_deleted_meanwhile(serve: Callable[[Responder], Recorder]) -> None:
    fake = FakeGrafana()

    def respond(request: Received) -> tuple[int, object]:
        if request.method == "GET":  # a search that still lists an annotation someone has just deleted
            return 200, [{"id": 99, "tags": ["aiops-action:act-gone"], "text": "t", "time": 1}]
        return fake(request)

    server = serve(respond)
    params = GrafanaAnnotateParams(text="t")
    async with GrafanaAnnotations(server.url, TOKEN) as backend:
        assert await backend.undo(params, request_for("grafana_annotate", params, id="act-gone")) == (
            "deleted annotation 99"
        )
    assert calls(server)[-1] == ("DELETE", "/api/annotations/99")


async def test_undo_fails_when_grafana_refuses_the_delete(grafana: tuple[FakeGrafana, Recorder]) -> None:
    fake, server = grafana
    params = GrafanaAnnotateParams(text="t")
    request = request_for("grafana_annotate", params)
    async with GrafanaAnnotations(server.url, TOKEN, clock=FakeClock(NOW)) as backend:
        await backend.execute(params, request)

        def refuse_deletes(got: Received) -> tuple[int, object]:
            if got.method == "DELETE":
                return 403, {"message": "You'll need additional permissions to perform this action."}
            return fake(got)

        server.respond = refuse_deletes
        with pytest.raises(PermanentError, match="delete annotation 1: HTTP 403; Grafana said: You'll need"):
            await backend.undo(params, request)
    assert list(fake.annotations) == [1]


# --- every HTTP backend -----------------------------------------------------------------------------------------

# Each builds a backend for a server at the URL, with the timeout, and parameters its action accepts.
BACKENDS: dict[str, Callable[[str, float], tuple[Any, ActionParams]]] = {
    "alertmanager_silence": lambda url, timeout: (
        AlertmanagerSilences(url, timeout_s=timeout),
        AlertmanagerSilenceParams(matchers={"alertname": "X"}),
    ),
    "grafana_annotate": lambda url, timeout: (
        GrafanaAnnotations(url, TOKEN, timeout_s=timeout),
        GrafanaAnnotateParams(text="t"),
    ),
    "webhook_notify": lambda url, timeout: (
        WebhookNotifier(timeout_s=timeout),
        WebhookNotifyParams(url=f"{url}/hook", message="m"),
    ),
}


def _backend_and_params(action: str, url: str, timeout: float) -> tuple[Any, ActionParams, ActionRequest]:
    backend, params = BACKENDS[action](url, timeout)
    return backend, params, request_for(action, params)


@pytest.mark.parametrize("name", sorted(BACKENDS))
async def test_a_server_that_never_answers_is_a_temporary_error_within_the_timeout(name: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend, params, request = _backend_and_params(name, url, 0.3)
        started = time.monotonic()
        try:
            with pytest.raises(TemporaryError, match=r"answer within 0\.3s"):
                await backend.execute(params, request)
        finally:
            await backend.aclose()
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("name", sorted(BACKENDS))
async def test_a_closed_port_is_a_temporary_error_at_once(name: str) -> None:
    backend, params, request = _backend_and_params(name, f"http://127.0.0.1:{free_port()}", 5.0)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryError, match="cannot reach"):
            await backend.execute(params, request)
    finally:
        await backend.aclose()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("name", sorted(BACKENDS))
async def test_parameters_of_another_action_are_refused(name: str) -> None:
    backend, _, request = _backend_and_params(name, "http://127.0.0.1:9", 1.0)
    other = (
        GrafanaAnnotateParams(text="t")
        if name == "alertmanager_silence"
        else RolloutRestartParams(namespace="n", deployment="d")
    )
    try:
        with pytest.raises(PermanentError, match="cannot carry out"):
            await backend.execute(other, request)
    finally:
        await backend.aclose()


async def test_alertmanager_credentials_are_sent(serve: Callable[[Responder], Recorder]) -> None:
    server = serve(lambda _: (200, []))
    params = AlertmanagerSilenceParams(matchers={"alertname": "X"})
    request = request_for("alertmanager_silence", params)
    async with AlertmanagerSilences(server.url, bearer_token="am-token") as backend:
        assert await backend.applied(params, request) is False
    async with AlertmanagerSilences(server.url, basic_auth=("ops", "pw")) as backend:
        assert await backend.applied(params, request) is False
    assert [got.headers["authorization"] for got in server.received] == ["Bearer am-token", "Basic b3BzOnB3"]
    with pytest.raises(ValueError, match="not both"):
        AlertmanagerSilences(server.url, basic_auth=("ops", "pw"), bearer_token="t")


async def test_alertmanager_silence_sentences_quote_values_as_promql(serve: Callable[[Responder], Recorder]) -> None:
    # The sentence shows a selector an SRE can paste into Prometheus; the API gets the value itself.
    value = 'C:\\share "x"\n'
    server = serve(lambda got: (200, []) if got.method == "GET" else (200, {"silenceID": "s-1"}))
    params = AlertmanagerSilenceParams(matchers={"path": value, "alertname": "X"})
    async with AlertmanagerSilences(server.url) as backend:
        sentence = await backend.execute(params, request_for("alertmanager_silence", params))
    assert sentence.startswith('created silence s-1 for {alertname="X", path="C:\\\\share \\"x\\"\\n"} until ')
    assert 'matching {alertname="X", path="C:\\\\share \\"x\\"\\n"} in Alertmanager' in params.describe()
    posted = next(got.body for got in server.received if got.method == "POST")
    assert {"name": "path", "value": value, "isRegex": False, "isEqual": True} in posted["matchers"]
