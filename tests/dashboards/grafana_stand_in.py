"""A stand-in for Grafana's dashboard API, ``POST /api/dashboards/db``, as Grafana documents it: a bearer token,
``{"dashboard": ..., "folderUid"?, "overwrite", "message"?}`` in, ``{"id", "uid", "url", "status": "success",
"version", "slug"}`` out; 401 for a wrong token, 400 for a body without a dashboard title or an unknown folder,
412 ``version-mismatch`` when a dashboard with that uid exists and ``overwrite`` is false."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Stored:
    id: int
    version: int
    folder_uid: str | None
    dashboard: dict[str, Any]
    message: str | None


@dataclass
class StandInGrafana:
    token: str
    folders: set[str] = field(default_factory=set)
    # Grafana answers URLs under the sub-path it is served from (its root_url setting).
    sub_path: str = ""
    dashboards: dict[str, Stored] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self, body: object) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        dashboard: dict[str, Any] = body["dashboard"]
        title = dashboard.get("title")
        if not isinstance(title, str) or not title.strip():
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        folder_uid = body.get("folderUid")
        if folder_uid is not None and folder_uid not in self.folders:
            return 400, {"message": "folder not found", "status": "not-found"}
        uid = dashboard.get("uid") or f"generated{len(self.dashboards) + 1}"
        with self._lock:
            existing = self.dashboards.get(uid)
            if existing is not None and not body.get("overwrite", False):
                return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
            number = existing.id if existing else len(self.dashboards) + 1
            version = existing.version + 1 if existing else 1
            self.dashboards[uid] = Stored(number, version, folder_uid, dashboard, body.get("message"))
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        return 200, {
            "id": number,
            "uid": uid,
            "url": f"{self.sub_path}/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }


class StandInServer:
    """Serves a ``StandInGrafana`` on 127.0.0.1 at an ephemeral port while the ``with`` block runs."""

    def __init__(self, grafana: StandInGrafana) -> None:
        self.grafana = grafana
        state = grafana

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                state.requests.append(("POST", self.path, dict(self.headers.items())))
                if self.path != f"{state.sub_path}/api/dashboards/db":
                    self._answer(404, {"message": "Not found"})
                elif self.headers.get("Authorization") != f"Bearer {state.token}":
                    self._answer(401, {"message": "Invalid API key"})
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        self._answer(400, {"message": "bad request data"})
                        return
                    self._answer(*state.save(body))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.grafana.sub_path}"

    def __enter__(self) -> StandInServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
