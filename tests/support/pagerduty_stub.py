"""A stand-in for PagerDuty's Events API v2 on a loopback port, for tests: a real HTTP server that checks events
as PagerDuty documents them and keeps alerts as PagerDuty would.

``POST /v2/enqueue`` answers 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}`` for a
valid event, and 400 ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`` when the
routing key is not 32 characters, ``event_action`` is not trigger, acknowledge or resolve, a trigger lacks
``payload.summary``, ``payload.source`` or ``payload.severity``, the summary is over 1,024 characters, the severity
is not critical, error, warning or info, or an acknowledge or resolve has no ``dedup_key``. A trigger whose
``dedup_key`` names an open (triggered or acknowledged) alert is merged into it, as PagerDuty deduplicates;
otherwise it opens a new alert (a missing ``dedup_key`` is generated). PagerDuty takes an acknowledge or resolve
for a ``dedup_key`` it has no open alert for (202) and drops it: the stub records such events in ``ignored`` so
that tests can assert the engine sends none. ``POST /v2/change/enqueue`` takes change events (202).

``fail_next(status, times)`` answers the next requests with an error instead (429 ``throttle event`` or a 5xx),
without looking at them, as an overloaded PagerDuty would.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
OPEN = frozenset({"triggered", "acknowledged"})


@dataclass
class Alert:
    dedup_key: str
    routing_key: str
    status: str = "triggered"
    # Every event that reached this alert, in order (merged triggers included).
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PagerDutyStub:
    requests: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = stub._answer(self.path, raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures += [status] * times

    def events(self, event_action: str | None = None) -> list[dict[str, Any]]:
        """Every event PagerDuty took (202), in order, optionally of one kind."""
        return [
            request["body"]
            for request in self.requests
            if request["status"] == 202
            and request["path"] == "/v2/enqueue"
            and (event_action is None or request["body"].get("event_action") == event_action)
        ]

    def alert(self, dedup_key: str) -> Alert:
        (found,) = [alert for alert in self.alerts if alert.dedup_key == dedup_key]
        return found

    def _answer(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if self._failures:
                status = self._failures.pop(0)
                answer = _throttled() if status == 429 else {"status": "error", "message": "Internal Server Error"}
            elif path == "/v2/enqueue":
                status, answer = self._enqueue(body)
            elif path == "/v2/change/enqueue":
                status, answer = self._change(body)
            else:
                status, answer = 404, {"status": "error", "message": "Not Found"}
            self.requests.append({"path": path, "status": status, "body": body, "answer": answer})
            return status, answer

    def _enqueue(self, body: Any) -> tuple[int, dict[str, Any]]:
        errors = _event_errors(body)
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        routing_key, action = body["routing_key"], body["event_action"]
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        open_alert = next(
            (
                alert
                for alert in self.alerts
                if alert.dedup_key == dedup_key and alert.routing_key == routing_key and alert.status in OPEN
            ),
            None,
        )
        if action == "trigger":
            if open_alert is None:
                open_alert = Alert(dedup_key, routing_key)
                self.alerts.append(open_alert)
            open_alert.events.append(body)
        elif open_alert is None:
            self.ignored.append(body)
        else:
            open_alert.status = "acknowledged" if action == "acknowledge" else "resolved"
            open_alert.events.append(body)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _change(self, body: Any) -> tuple[int, dict[str, Any]]:
        errors = _routing_key_errors(body)
        payload = body.get("payload") if isinstance(body, dict) else None
        if not isinstance(payload, dict) or not payload.get("summary"):
            errors.append("'payload.summary' is missing or blank")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        self.changes.append(body)
        return 202, {"status": "success", "message": "Change event processed"}


def _throttled() -> dict[str, Any]:
    return {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}


def _routing_key_errors(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["Event object is not a JSON object"]
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        return ["Length of 'routing_key' is incorrect (should be 32 characters)"]
    return []


def _event_errors(body: Any) -> list[str]:
    errors = _routing_key_errors(body)
    if not isinstance(body, dict):
        return errors
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if isinstance(payload.get("summary"), str) and len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is too long (at most 1024 characters)")
        if payload.get("severity") and payload["severity"] not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: 'critical', 'error', 'warning' or 'info')")
    return errors
