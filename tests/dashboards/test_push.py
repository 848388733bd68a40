"""``aiops dashboards push`` and the upload adapter against a stand-in for Grafana's dashboard API."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.adapters.grafana_dashboards import GrafanaDashboards, load_dashboards
from engine.app.cli_dashboards import dashboards_cli
from engine.domain.errors import ConfigurationError, PermanentError, TemporaryError
from tests.dashboards.grafana_stand_in import StandInGrafana, StandInServer

SHIPPED = Path(__file__).resolve().parents[2] / "dashboards"
TOKEN = "glsa_stand_in_token"
SHIPPED_UIDS = {"aiops-engine-overview", "aiops-serving", "aiops-incidents"}


@pytest.fixture
def grafana() -> Iterator[StandInServer]:
    with StandInServer(StandInGrafana(TOKEN, folders={"aiops-engine"}, sub_path="/grafana")) as server:
        yield server


def _app() -> typer.Typer:
    # Registered the way engine/app/cli.py registers command groups.
    app = typer.Typer()
    app.add_typer(dashboards_cli, name="dashboards")
    return app


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_every_shipped_dashboard_is_pushed_into_the_folder(grafana: StandInServer) -> None:
    dashboards = load_dashboards(SHIPPED)
    with GrafanaDashboards(grafana.url, TOKEN) as client:
        uploaded = [client.push(d, folder_uid="aiops-engine", message="release 1") for d in dashboards]
    stored = grafana.grafana.dashboards
    assert set(stored) == SHIPPED_UIDS
    for dashboard, answer in zip(dashboards, uploaded, strict=True):
        kept = stored[dashboard.uid]
        assert kept.folder_uid == "aiops-engine"
        assert kept.message == "release 1"
        assert kept.dashboard["panels"] == dashboard.model["panels"]
        assert kept.dashboard["id"] is None
        assert answer.version == 1
        assert answer.url.startswith(f"{grafana.url}/d/{dashboard.uid}/")
    method, path, headers = grafana.grafana.requests[0]
    assert (method, path) == ("POST", "/grafana/api/dashboards/db")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_pushing_again_replaces_the_dashboard_with_a_new_version(grafana: StandInServer, tmp_path: Path) -> None:
    model = {"uid": "mine", "title": "Mine", "panels": [], "schemaVersion": 41}
    _write(tmp_path, "mine.json", json.dumps(model))
    with GrafanaDashboards(grafana.url, TOKEN) as client:
        client.push(load_dashboards(tmp_path)[0])
        _write(tmp_path, "mine.json", json.dumps({**model, "title": "Mine, renamed"}))
        again = client.push(load_dashboards(tmp_path)[0])
    assert again.version == 2
    assert grafana.grafana.dashboards["mine"].dashboard["title"] == "Mine, renamed"
    assert grafana.grafana.dashboards["mine"].folder_uid is None


def test_a_refused_token_is_a_permanent_error(grafana: StandInServer) -> None:
    with GrafanaDashboards(grafana.url, "wrong") as client, pytest.raises(PermanentError) as caught:
        client.push(load_dashboards(SHIPPED)[0])
    assert "refused the token (HTTP 401); Grafana said: Invalid API key" in str(caught.value)
    assert grafana.grafana.dashboards == {}


def test_an_unknown_folder_names_what_grafana_said(grafana: StandInServer) -> None:
    with GrafanaDashboards(grafana.url, TOKEN) as client, pytest.raises(PermanentError, match="folder not found"):
        client.push(load_dashboards(SHIPPED)[0], folder_uid="nope")


def test_an_unreachable_grafana_is_a_temporary_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with GrafanaDashboards(f"http://127.0.0.1:{port}", TOKEN) as client, pytest.raises(TemporaryError):
        client.push(load_dashboards(SHIPPED)[0])


@pytest.mark.parametrize("url", ["grafana:3000", "ftp://grafana", "http://grafana:port"])
def test_a_malformed_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Grafana URL"):
        GrafanaDashboards(url, TOKEN)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"uid": "a",\n "title": }', r"bad\.json:2: not valid JSON"),
        ('{"title": "no uid"}', r"bad\.json: uid must be"),
        ('{"uid": "a", "title": ""}', r"bad\.json: title must be"),
        ("[1, 2]", r"bad\.json: a dashboard must be a JSON object"),
    ],
)
def test_unusable_dashboard_files_are_named(tmp_path: Path, text: str, problem: str) -> None:
    _write(tmp_path, "bad.json", text)
    with pytest.raises(ConfigurationError, match=problem):
        load_dashboards(tmp_path)


def test_two_files_with_one_uid_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a.json", '{"uid": "same", "title": "A"}')
    _write(tmp_path, "b.json", '{"uid": "same", "title": "B"}')
    with pytest.raises(ConfigurationError, match=r"b\.json: uid 'same' is also used by .*a\.json"):
        load_dashboards(tmp_path)


def test_a_folder_without_dashboards_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no dashboard"):
        load_dashboards(tmp_path)


def test_cli_pushes_every_dashboard(grafana: StandInServer) -> None:
    result = CliRunner().invoke(
        _app(),
        [
            "dashboards",
            "push",
            "--url",
            grafana.url,
            "--token-env",
            "GRAFANA_TEST_TOKEN",
            "--folder-uid",
            "aiops-engine",
            str(SHIPPED),
        ],
        env={"GRAFANA_TEST_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.output
    assert set(grafana.grafana.dashboards) == SHIPPED_UIDS
    for uid in SHIPPED_UIDS:
        assert f"{uid}: version 1 at {grafana.url}/d/{uid}/" in result.stdout
    assert f"3 dashboards pushed to {grafana.url}" in result.stdout


def test_cli_reports_a_refused_token_in_one_line(grafana: StandInServer) -> None:
    result = CliRunner().invoke(
        _app(),
        ["dashboards", "push", "--url", grafana.url, "--token-env", "GRAFANA_TEST_TOKEN", str(SHIPPED)],
        env={"GRAFANA_TEST_TOKEN": "expired"},
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("aiops: error:")]
    assert len(errors) == 1
    assert "HTTP 401" in errors[0]
    assert "Traceback" not in result.output
    assert grafana.grafana.dashboards == {}


def test_cli_needs_the_token_variable(grafana: StandInServer) -> None:
    result = CliRunner().invoke(
        _app(),
        ["dashboards", "push", "--url", grafana.url, "--token-env", "GRAFANA_TEST_TOKEN", str(SHIPPED)],
        env={"GRAFANA_TEST_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "aiops: error: environment variable GRAFANA_TEST_TOKEN is not set or empty (a Grafana token)"
    )
    assert grafana.grafana.requests == []
