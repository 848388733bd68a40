"""Dashboard files and their upload to Grafana through its HTTP API (``POST /api/dashboards/db``).

A dashboard file is one JSON dashboard model with a stable ``uid``; uploading it with ``overwrite`` replaces what
Grafana holds under that uid, so pushing the same folder twice is harmless. Grafana's answers map onto the engine's
errors here: a refused token (401), a missing permission (403) and invalid dashboards (400, 412) are permanent;
5xx, timeouts and connection failures are temporary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.adapters.actions.failures import error_for_status
from engine.adapters.grafana_http import GrafanaAddress, grafana_headers, grafana_reason
from engine.domain.errors import ConfigurationError, EngineError, PermanentError, TemporaryError

UPLOAD_PATH = "api/dashboards/db"
# Grafana's own limit on a dashboard uid.
_UID_MAX = 40


@dataclass(frozen=True)
class DashboardFile:
    path: Path
    uid: str
    title: str
    model: dict[str, Any]


@dataclass(frozen=True)
class Uploaded:
    """What Grafana answered for one dashboard: the version it now holds and where to open it."""

    uid: str
    version: int
    url: str


def load_dashboards(directory: Path) -> list[DashboardFile]:
    """Every ``*.json`` dashboard in ``directory``, in name order; a file that is not a usable dashboard model is a
    configuration error naming the file."""
    if not directory.is_dir():
        raise ConfigurationError(f"{directory}: not a directory of dashboards")
    dashboards = [_load_one(path) for path in sorted(directory.glob("*.json"))]
    if not dashboards:
        raise ConfigurationError(f"{directory}: no dashboard (*.json) files")
    seen: dict[str, Path] = {}
    for dashboard in dashboards:
        if dashboard.uid in seen:
            raise ConfigurationError(f"{dashboard.path}: uid {dashboard.uid!r} is also used by {seen[dashboard.uid]}")
        seen[dashboard.uid] = dashboard.path
    return dashboards


def _load_one(path: Path) -> DashboardFile:
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(model, dict):
        raise ConfigurationError(f"{path}: a dashboard must be a JSON object")
    uid, title = model.get("uid"), model.get("title")
    # Without a fixed uid every push would create another copy instead of replacing the previous one.
    if not isinstance(uid, str) or not 0 < len(uid) <= _UID_MAX:
        raise ConfigurationError(f"{path}: uid must be a string of 1 to {_UID_MAX} characters")
    if not isinstance(title, str) or not title:
        raise ConfigurationError(f"{path}: title must be a non-empty string")
    return DashboardFile(path, uid, title, model)


class GrafanaDashboards:
    """Uploads dashboards to one Grafana; owns one HTTP connection pool, released by ``close``."""

    def __init__(
        self, url: str, token: str, *, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        address = GrafanaAddress.parse(url)
        self._where = address.where
        self._base = address.base_url
        self._client = httpx.Client(
            base_url=self._base,
            headers=grafana_headers(token),
            timeout=timeout_s,
            follow_redirects=False,
            transport=transport,
        )
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GrafanaDashboards:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def push(self, dashboard: DashboardFile, *, folder_uid: str | None = None, message: str | None = None) -> Uploaded:
        """Create or replace ``dashboard`` (matched by uid) in the folder ``folder_uid`` (the General folder if
        None)."""
        what = f"upload dashboard {dashboard.uid} ({dashboard.path.name})"
        # A numeric id belongs to the Grafana the file was exported from; null lets this Grafana match by uid.
        body: dict[str, Any] = {"dashboard": {**dashboard.model, "id": None}, "overwrite": True}
        if folder_uid is not None:
            body["folderUid"] = folder_uid
        if message is not None:
            body["message"] = message
        try:
            reply = self._client.post(UPLOAD_PATH, json=body)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: Grafana did not answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(f"{what}: cannot reach Grafana at {self._where} ({exc.__class__.__name__})") from exc
        if not reply.is_success:
            raise _refusal(what, reply)
        try:
            answer = reply.json()
        except ValueError as exc:
            raise PermanentError(f"{what}: Grafana answered something other than JSON; check the URL") from exc
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise PermanentError(f"{what}: unexpected answer from Grafana: {str(answer)[:200]}")
        return Uploaded(
            uid=str(answer.get("uid", dashboard.uid)),
            version=int(answer.get("version", 0)),
            url=self._absolute(str(answer.get("url", ""))),
        )

    def _absolute(self, path: str) -> str:
        # Grafana answers a path that already includes its sub-path ("/grafana/d/<uid>/<slug>").
        return f"{self._where}{path}" if path.startswith("/") else path


def _refusal(what: str, reply: httpx.Response) -> EngineError:
    status = reply.status_code
    reason = grafana_reason(reply)
    said = f"; Grafana said: {reason}" if reason else ""
    if status == 401:
        return PermanentError(f"{what}: Grafana refused the token (HTTP 401){said}")
    if status == 403:
        return PermanentError(f"{what}: the token may not write dashboards in this folder (HTTP 403){said}")
    if status == 412:
        return PermanentError(f"{what}: Grafana refused to replace the dashboard (HTTP 412){said}")
    error = error_for_status(status, what)
    return type(error)(f"{error}{said}")
